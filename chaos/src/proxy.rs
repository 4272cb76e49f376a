//! The TCP fault proxy: one listener per directed peer link (node X dialling
//! node Y), which can delay, blackhole, refuse or pass the bytes.
//!
//! The kernel here has no `tc netem` and the harness runs without root, so
//! faults live in user space. A link X→Y carries X's requests to Y and Y's
//! answers on the same connections; cutting X→Y alone while Y→X passes is a
//! one-way partition.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// Read buffer per direction of a proxied connection: big enough for a
/// batch of Raft entries in a few reads, small enough for hundreds of links.
const CHUNK_BYTES: usize = 16 * 1024;

/// What a link does to traffic right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkMode {
    /// Forward after the link's delay.
    Pass,
    /// Hold every byte (in both directions) until the mode changes, like a
    /// dropped route: TCP sees silence, not an error.
    Blackhole,
    /// Close existing connections and new ones at once (a refused port).
    Refuse,
}

/// A running proxy for one directed link.
#[derive(Debug)]
pub struct LinkProxy {
    addr: SocketAddr,
    mode: watch::Sender<LinkMode>,
    task: tokio::task::JoinHandle<()>,
}

impl LinkProxy {
    /// Binds port 0 now (so the address can go into node configs) and
    /// forwards to `target` once started with [`LinkProxy::serve`].
    pub async fn bind() -> anyhow::Result<(SocketAddr, PendingProxy)> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        Ok((addr, PendingProxy { listener }))
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn set_mode(&self, mode: LinkMode) {
        self.mode.send_replace(mode);
    }

    pub fn mode(&self) -> LinkMode {
        *self.mode.borrow()
    }
}

impl Drop for LinkProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A bound listener waiting for its target address.
#[derive(Debug)]
pub struct PendingProxy {
    listener: TcpListener,
}

impl PendingProxy {
    /// Starts forwarding to `target`, adding `delay` to each direction (half
    /// of the modelled round trip each way).
    pub fn serve(self, target: String, delay: Duration) -> anyhow::Result<LinkProxy> {
        let addr = self.listener.local_addr()?;
        let (mode, mode_rx) = watch::channel(LinkMode::Pass);
        let task = tokio::spawn(accept_loop(self.listener, target, delay, mode_rx));
        Ok(LinkProxy { addr, mode, task })
    }
}

async fn accept_loop(listener: TcpListener, target: String, delay: Duration, mode: watch::Receiver<LinkMode>) {
    loop {
        let Ok((inbound, _)) = listener.accept().await else {
            // Out of file descriptors or similar: back off instead of spinning.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        if *mode.borrow() == LinkMode::Refuse {
            drop(inbound);
            continue;
        }
        tokio::spawn(proxy_connection(inbound, target.clone(), delay, mode.clone()));
    }
}

/// Forwards one connection until either side closes or the link refuses.
async fn proxy_connection(inbound: TcpStream, target: String, delay: Duration, mut mode: watch::Receiver<LinkMode>) {
    let Ok(outbound) = TcpStream::connect(&target).await else {
        // The peer is down: closing the inbound side is what a real peer's
        // refused connection looks like to the dialler.
        return;
    };
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    let (in_read, in_write) = inbound.into_split();
    let (out_read, out_write) = outbound.into_split();
    let up = pump(in_read, out_write, delay, mode.clone());
    let down = pump(out_read, in_write, delay, mode.clone());
    let refused = async {
        let _ = mode.wait_for(|m| *m == LinkMode::Refuse).await;
    };
    // Whichever ends first tears the whole connection down.
    tokio::select! {
        _ = up => {}
        _ = down => {}
        _ = refused => {}
    }
}

/// Copies one direction, delivering each chunk `delay` after it was read and
/// only while the link is not blackholed; order is kept.
async fn pump(
    mut reader: tokio::net::tcp::OwnedReadHalf,
    mut writer: tokio::net::tcp::OwnedWriteHalf,
    delay: Duration,
    mut mode: watch::Receiver<LinkMode>,
) {
    // Unbounded: a blackholed link must keep accepting bytes like a network
    // that silently drops them would, and fault windows are seconds long.
    let (queue_tx, mut queue_rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let read = async move {
        let mut buf = vec![0u8; CHUNK_BYTES];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if queue_tx.send((Instant::now() + delay, buf[..n].to_vec())).is_err() {
                        return;
                    }
                }
            }
        }
    };
    let write = async move {
        while let Some((due, bytes)) = queue_rx.recv().await {
            tokio::time::sleep_until(due).await;
            if mode.wait_for(|m| *m == LinkMode::Pass).await.is_err() {
                return;
            }
            if writer.write_all(&bytes).await.is_err() {
                return;
            }
        }
        let _ = writer.shutdown().await;
    };
    tokio::join!(read, write);
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 64];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn passes_delays_blackholes_and_refuses() {
        let target = echo_server().await;
        let (addr, pending) = LinkProxy::bind().await.expect("bind");
        let proxy = pending.serve(target.to_string(), Duration::from_millis(20)).expect("serve");
        let mut conn = TcpStream::connect(addr).await.expect("connect");
        let start = std::time::Instant::now();
        conn.write_all(b"hi").await.expect("write");
        let mut buf = [0u8; 2];
        conn.read_exact(&mut buf).await.expect("echo");
        assert_eq!(&buf, b"hi");
        // 20 ms each way.
        assert!(start.elapsed() >= Duration::from_millis(40));

        proxy.set_mode(LinkMode::Blackhole);
        conn.write_all(b"yo").await.expect("write");
        let held = tokio::time::timeout(Duration::from_millis(200), conn.read_exact(&mut buf)).await;
        assert!(held.is_err(), "a blackholed link must deliver nothing");
        proxy.set_mode(LinkMode::Pass);
        conn.read_exact(&mut buf).await.expect("delivered after heal");
        assert_eq!(&buf, b"yo");

        proxy.set_mode(LinkMode::Refuse);
        let closed = conn.read(&mut buf).await;
        assert!(matches!(closed, Ok(0) | Err(_)), "a refusing link closes connections");
    }
}
