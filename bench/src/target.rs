//! The two systems under test behind one small interface: connect, put, get.

use std::time::Duration;

use holdfast_client::{Client, ClientTls, Consistency, ReadOptions, WriteOptions};
use serde::Serialize;

use crate::servers::etcd_connect;

/// holdfast keeps records in named registries; the benchmark uses one.
pub const REGISTRY: &str = "bench";

/// How long one request may take before it counts as an error. Generous: at
/// 256 clients on 2 cores a healthy tail is tens of milliseconds.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Holdfast,
    Etcd,
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Holdfast => "holdfast",
            Self::Etcd => "etcd",
        })
    }
}

impl std::str::FromStr for Kind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "holdfast" => Ok(Self::Holdfast),
            "etcd" => Ok(Self::Etcd),
            other => Err(format!("unknown target {other:?} (holdfast, etcd)")),
        }
    }
}

/// One connection to a target. Cloning shares the connection, so many
/// clients (concurrent request loops) can use one connection.
#[derive(Clone)]
pub enum Connection {
    Holdfast(Client),
    // Boxed: etcd's client is ten times the size of holdfast's.
    Etcd(Box<etcd_client::KvClient>),
}

impl Connection {
    /// Opens `count` independent connections (each its own HTTP/2 session).
    pub async fn open_many(
        kind: Kind,
        endpoints: &[String],
        count: usize,
        tls: Option<&ClientTls>,
    ) -> anyhow::Result<Vec<Self>> {
        let mut connections = Vec::with_capacity(count);
        for _ in 0..count.max(1) {
            connections.push(Self::open(kind, endpoints, tls).await?);
        }
        Ok(connections)
    }

    async fn open(kind: Kind, endpoints: &[String], tls: Option<&ClientTls>) -> anyhow::Result<Self> {
        match kind {
            Kind::Holdfast => {
                // The client finds and remembers the leader itself; each
                // Client has its own channel per endpoint.
                let mut builder = Client::builder(endpoints.to_vec()).timeout(REQUEST_TIMEOUT);
                if let Some(tls) = tls {
                    builder = builder.tls(tls.clone());
                }
                let client = builder.build()?;
                Ok(Self::Holdfast(client))
            }
            Kind::Etcd => {
                let options = etcd_client::ConnectOptions::new()
                    .with_timeout(REQUEST_TIMEOUT)
                    .with_connect_timeout(Duration::from_secs(2));
                let client = etcd_connect(endpoints, tls, options).await?;
                Ok(Self::Etcd(Box::new(client.kv_client())))
            }
        }
    }

    pub async fn put(&mut self, key: String, value: Vec<u8>) -> anyhow::Result<()> {
        match self {
            Self::Holdfast(client) => {
                client.put(REGISTRY, key, value, WriteOptions::default()).await?;
            }
            Self::Etcd(kv) => {
                kv.put(key, value, None).await?;
            }
        }
        Ok(())
    }

    /// A linearizable read on both targets (etcd's default `get` goes through
    /// ReadIndex; `serializable` would be the stale kind).
    pub async fn get(&mut self, key: String) -> anyhow::Result<()> {
        match self {
            Self::Holdfast(client) => {
                let options = ReadOptions { consistency: Consistency::Linearizable, at_revision: None };
                client.get(REGISTRY, key, options).await?;
            }
            Self::Etcd(kv) => {
                kv.get(key, None).await?;
            }
        }
        Ok(())
    }
}
