//! Seal and open throughput at typical record sizes, in MB/s. Prints figures
//! and asserts nothing: timings depend on the machine.

use std::hint::black_box;
use std::time::{Duration, Instant};

use holdfast_crypto::{open, record_aad, seal, DataKey, Keyring};

/// Small records (a name and a date), a typical document, and a large scan.
const SIZES_BYTES: [usize; 3] = [256, 4 * 1024, 64 * 1024];

/// Long enough per size that timer resolution and warm-up do not matter.
const RUN_TIME: Duration = Duration::from_millis(500);

fn main() {
    let keyring = Keyring::new(DataKey::generate(1));
    let aad = record_aad("population", &[0x42; 32]);
    println!("{:>10} {:>12} {:>12}", "size", "seal MB/s", "open MB/s");
    for size in SIZES_BYTES {
        let plaintext = vec![0x5a; size];
        let envelope = seal(keyring.current(), &aad, &plaintext);
        let seal_rate = rate_mb_per_s(size, || {
            black_box(seal(keyring.current(), black_box(&aad), black_box(&plaintext)));
        });
        let open_rate = rate_mb_per_s(size, || {
            let opened = open(&keyring, black_box(&aad), black_box(&envelope));
            black_box(opened.expect("a fresh envelope opens"));
        });
        println!("{:>10} {seal_rate:>12.1} {open_rate:>12.1}", format_size(size));
    }
}

/// Runs `operation` repeatedly for about [`RUN_TIME`] and returns the rate in
/// megabytes (10^6 bytes) of plaintext per second.
fn rate_mb_per_s(size: usize, mut operation: impl FnMut()) -> f64 {
    // Warm caches and the CPU's clock before measuring.
    for _ in 0..100 {
        operation();
    }
    let start = Instant::now();
    let mut done: u64 = 0;
    while start.elapsed() < RUN_TIME {
        for _ in 0..64 {
            operation();
        }
        done += 64;
    }
    let bytes = done as f64 * size as f64;
    bytes / start.elapsed().as_secs_f64() / 1e6
}

fn format_size(size: usize) -> String {
    if size >= 1024 {
        format!("{} KiB", size / 1024)
    } else {
        format!("{size} B")
    }
}
