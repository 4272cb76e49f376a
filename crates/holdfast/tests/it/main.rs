//! Tests of the shipped binaries as users run them: `holdfast serve`
//! processes from config files, and `holdfastctl` against them; the
//! allocator the binary is built with.

mod t10_processes;
mod t20_ctl;
mod t30_encryption;
mod t40_certs;
mod t50_allocator;
