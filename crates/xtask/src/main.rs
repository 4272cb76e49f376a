//! cargo xtask: installs what the build needs, then runs demo, test or bench

fn main() {}
