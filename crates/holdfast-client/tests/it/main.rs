//! Integration tests of holdfast-client against scripted fake nodes on loopback.

mod fake;
mod t10_leader_following;
mod t20_write_outcomes;
mod t30_reads_and_admin;

use std::time::Duration;

use holdfast_client::Client;

/// A client over `addrs` with short timeouts, so failure tests stay fast.
pub fn client_for(addrs: &[&str], max_retries: u32) -> Client {
    Client::builder(addrs.iter().map(|addr| (*addr).to_owned()).collect())
        .timeout(Duration::from_secs(2))
        .max_retries(max_retries)
        .build()
        .expect("valid endpoints")
}

/// A loopback address where nothing listens.
pub async fn closed_addr() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
    let addr = listener.local_addr().expect("bound address").to_string();
    drop(listener);
    addr
}
