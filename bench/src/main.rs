//! holdfast-bench: benchmark against etcd (work in progress).

fn main() {}
