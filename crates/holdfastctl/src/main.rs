//! holdfastctl: the etcdctl-style client CLI for holdfast

fn main() {}
