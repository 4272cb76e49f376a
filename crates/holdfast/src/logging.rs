//! Tracing setup for the node: human or JSON lines on stderr.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. `RUST_LOG` wins over the configured level.
pub fn init(format: &str, level: &str) -> anyhow::Result<()> {
    let filter = EnvFilter::try_from_default_env().or_else(|_| EnvFilter::try_new(level))?;
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
