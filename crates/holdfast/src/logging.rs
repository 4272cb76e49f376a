//! Tracing setup for the node: human or JSON lines on stderr.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// openraft warns on every failed heartbeat, every heartbeat interval, for
/// as long as a peer is down (hours, if a region is cut off); replication
/// to that peer keeps warning at its backoff rate, which says the same.
const QUIET_HEARTBEATS: &str = "openraft::core::heartbeat=error";

/// The filter for a configured level: the level, with openraft's heartbeat
/// warnings quieted unless the level names openraft itself.
fn configured_filter(level: &str) -> String {
    if level.contains("openraft") {
        level.to_string()
    } else {
        format!("{level},{QUIET_HEARTBEATS}")
    }
}

/// Installs the global subscriber. `RUST_LOG` wins over the configured level.
pub fn init(format: &str, level: &str) -> anyhow::Result<()> {
    let filter = EnvFilter::try_from_default_env().or_else(|_| EnvFilter::try_new(configured_filter(level)))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, never in log files.
        .with_ansi(std::io::stderr().is_terminal());
    let result = match format {
        "json" => builder.json().try_init(),
        "human" => builder.try_init(),
        other => anyhow::bail!("log format must be 'human' or 'json', not {other:?}"),
    };
    result.map_err(|e| anyhow::anyhow!("cannot install logger: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeat_warnings_are_quieted_unless_openraft_is_named() {
        assert_eq!(configured_filter("info"), "info,openraft::core::heartbeat=error");
        assert_eq!(configured_filter("debug,openraft=trace"), "debug,openraft=trace");
        assert!(EnvFilter::try_new(configured_filter("holdfast_server=debug,warn")).is_ok());
    }
}
