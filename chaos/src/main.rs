//! holdfast-chaos: chaos harness (work in progress).

fn main() {}
