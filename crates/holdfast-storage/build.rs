//! Links the C++ runtime when RocksDB comes prebuilt.
//!
//! `librocksdb-sys` compiles RocksDB from source (about 15 minutes on two
//! cores) unless `ROCKSDB_LIB_DIR` names a directory holding a prebuilt
//! `librocksdb.a`; `cargo xtask` keeps one so the source build happens once
//! per machine. In that mode nobody else asks for `libstdc++`, so ask here.

fn main() {
    println!("cargo:rerun-if-env-changed=ROCKSDB_LIB_DIR");
    if std::env::var_os("ROCKSDB_LIB_DIR").is_some() {
        println!("cargo:rustc-link-lib=dylib=stdc++");
    }
}
