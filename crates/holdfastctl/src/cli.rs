//! The command line: every command, flag and environment variable of holdfastctl.

use std::path::PathBuf;
use std::time::Duration;

use clap::builder::BoolishValueParser;
use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};

/// etcdctl-style client for holdfast, the replicated state registry.
#[derive(Debug, Parser)]
#[command(name = "holdfastctl", version, about)]
pub struct Cli {
    /// Nodes to talk to (host:port), comma-separated. The client finds the
    /// leader among them by itself.
    #[arg(
        long,
        env = "HOLDFAST_ENDPOINTS",
        value_delimiter = ',',
        default_value = "127.0.0.1:7001",
        global = true,
        help_heading = "Global options"
    )]
    pub endpoints: Vec<String>,

    /// Output format.
    #[arg(
        short = 'w',
        long,
        env = "HOLDFAST_WRITE_OUT",
        value_enum,
        default_value_t = WriteOut::Table,
        global = true, help_heading = "Global options"
    )]
    pub write_out: WriteOut,

    /// Time allowed for one attempt of a request, e.g. `5s`, `500ms`.
    #[arg(long, env = "HOLDFAST_TIMEOUT", default_value = "5s", value_parser = parse_duration, global = true, help_heading = "Global options")]
    pub timeout: Duration,

    /// Retries after the first attempt (leader changes, lost connections).
    #[arg(long, env = "HOLDFAST_MAX_RETRIES", default_value_t = holdfast_client::DEFAULT_MAX_RETRIES, global = true, help_heading = "Global options")]
    pub max_retries: u32,

    /// Time allowed for a membership change (a learner catching up can be slow).
    #[arg(long, env = "HOLDFAST_MEMBERSHIP_TIMEOUT", default_value = "60s", value_parser = parse_duration, global = true, help_heading = "Global options")]
    pub membership_timeout: Duration,

    /// CA bundle to verify nodes with (PEM). With --cert and --key, every
    /// call is mutual TLS.
    #[arg(long, env = "HOLDFAST_CACERT", global = true, help_heading = "Global options")]
    pub cacert: Option<PathBuf>,

    /// Client certificate to present (PEM); its subject names the caller.
    #[arg(long, env = "HOLDFAST_CERT", global = true, help_heading = "Global options")]
    pub cert: Option<PathBuf>,

    /// Private key of --cert (PEM).
    #[arg(long, env = "HOLDFAST_KEY", global = true, help_heading = "Global options")]
    pub key: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WriteOut {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a record's new revision.
    Put(PutArgs),
    /// Read a record.
    Get(GetArgs),
    /// Delete a record (writes a tombstone; history stays readable).
    Delete(DeleteArgs),
    /// List a record's revisions, oldest first.
    History(HistoryArgs),
    /// List a registry's records.
    Scan(ScanArgs),
    /// Inspect and change cluster membership.
    #[command(subcommand)]
    Member(MemberCommand),
    /// Inspect the endpoints.
    #[command(subcommand)]
    Endpoint(EndpointCommand),
    /// Rotate and inspect the data keys that seal records.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Who may read, write, audit or administer which registry.
    #[command(subcommand)]
    Access(AccessCommand),
    /// The access audit trail: who looked at or changed a record, and when.
    #[command(subcommand)]
    Audit(AuditCommand),
}

#[derive(Debug, Subcommand)]
pub enum AccessCommand {
    /// Give IDENTITY permissions on SCOPE (a registry name, or '*' for all
    /// registries; admin on '*' administers the cluster).
    Grant(GrantArgs),
    /// Take permissions away from IDENTITY on SCOPE.
    Revoke(GrantArgs),
    /// Every grant, and the administrators named in node configs.
    List,
    /// The identity this client's certificate gives it, and its grants.
    Whoami,
}

#[derive(Debug, Args)]
pub struct GrantArgs {
    /// The certificate identity (subject CN or SAN), e.g. population-service.
    pub identity: String,
    /// A registry name, or '*'.
    pub scope: String,
    /// read, write, audit, admin.
    #[arg(required = true, num_args = 1..)]
    pub permissions: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Who read the record, and when (gets, histories, scans, audit reads).
    WhoRead(TrailArgs),
    /// Every audited access to the record: reads, writes, refusals.
    Trail(TrailArgs),
}

#[derive(Debug, Args)]
pub struct TrailArgs {
    pub registry: String,
    pub id: String,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Make a new data key current; older revisions are re-sealed in the background.
    Rotate,
    /// The data keys, which is current, and how many stored revisions each seals.
    Status,
}

/// Flags shared by the writes.
#[derive(Debug, Args)]
pub struct WriteFlags {
    /// Write only if the record's revision is N (0: only if it does not exist).
    #[arg(long, env = "HOLDFAST_IF_REVISION", value_name = "N")]
    pub if_revision: Option<u64>,
    /// Why the change is made; kept in history.
    #[arg(long, env = "HOLDFAST_REASON", default_value = "")]
    pub reason: String,
    /// Who makes the change; kept in history.
    #[arg(long, env = "HOLDFAST_ACTOR", default_value = "")]
    pub actor: String,
    /// Idempotency key. Reuse the one printed with an "outcome unknown"
    /// error to retry that write safely; a new UUID when absent.
    #[arg(long, env = "HOLDFAST_REQUEST_ID")]
    pub request_id: Option<String>,
}

#[derive(Debug, Args)]
pub struct PutArgs {
    pub registry: String,
    pub id: String,
    /// The value; `-` reads it from standard input.
    pub value: String,
    #[command(flatten)]
    pub write: WriteFlags,
}

#[derive(Debug, Args)]
pub struct GetArgs {
    pub registry: String,
    pub id: String,
    /// Read from the first endpoint that answers, from its own applied state,
    /// without asking the leader (may be behind).
    #[arg(long, env = "HOLDFAST_STALE", action = ArgAction::SetTrue, value_parser = BoolishValueParser::new())]
    pub stale: bool,
    /// Read the record as it was at revision N.
    #[arg(long, env = "HOLDFAST_AT_REVISION", value_name = "N")]
    pub at_revision: Option<u64>,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    pub registry: String,
    pub id: String,
    #[command(flatten)]
    pub write: WriteFlags,
}

#[derive(Debug, Args)]
pub struct PageFlags {
    /// Entries per page (0: the server's default).
    #[arg(long, env = "HOLDFAST_LIMIT", default_value_t = 0)]
    pub limit: u32,
    /// Fetch every page, not just the first.
    #[arg(long, env = "HOLDFAST_ALL", action = ArgAction::SetTrue, value_parser = BoolishValueParser::new())]
    pub all: bool,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    pub registry: String,
    pub id: String,
    /// Start after revision N (a previous page's next revision).
    #[arg(long, env = "HOLDFAST_AFTER_REVISION", default_value_t = 0, value_name = "N")]
    pub after_revision: u64,
    #[command(flatten)]
    pub page: PageFlags,
}

#[derive(Debug, Args)]
pub struct ScanArgs {
    pub registry: String,
    /// Resume from a previous page's token (hex).
    #[arg(long, env = "HOLDFAST_PAGE_TOKEN", value_name = "HEX")]
    pub page_token: Option<String>,
    #[command(flatten)]
    pub page: PageFlags,
}

#[derive(Debug, Subcommand)]
pub enum MemberCommand {
    /// List members, the leader, and which failures the voters survive.
    List,
    /// Add a node as a non-voting learner.
    AddLearner(AddLearnerArgs),
    /// Make a learner a voter.
    Promote(ForceArgs),
    /// Remove a node.
    Remove(ForceArgs),
}

#[derive(Debug, Args)]
pub struct AddLearnerArgs {
    pub id: u64,
    /// The node's Raft address (host:port).
    pub addr: String,
    #[arg(long, env = "HOLDFAST_REGION")]
    pub region: String,
    #[arg(long, env = "HOLDFAST_ZONE", default_value = "")]
    pub zone: String,
    #[arg(long, env = "HOLDFAST_PROVIDER", default_value = "")]
    pub provider: String,
    #[arg(long, env = "HOLDFAST_JURISDICTION", value_enum)]
    pub jurisdiction: Jurisdiction,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Jurisdiction {
    Domestic,
    Foreign,
}

#[derive(Debug, Args)]
pub struct ForceArgs {
    pub id: u64,
    /// Go ahead even if the voters would break the placement rule.
    #[arg(long, env = "HOLDFAST_FORCE", action = ArgAction::SetTrue, value_parser = BoolishValueParser::new())]
    pub force: bool,
}

#[derive(Debug, Subcommand)]
pub enum EndpointCommand {
    /// One row per endpoint: its node, role, term, leader and applied revision.
    Status,
}

/// Parses `500ms`, `5s`, `2m`, or a bare number of seconds (`1.5`).
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().map_err(|_| format!("{text:?} is not a duration like 5s or 500ms"))?;
    let seconds = match unit.trim() {
        "" | "s" => number,
        "ms" => number / 1000.0,
        "m" => number * 60.0,
        other => return Err(format!("unknown unit {other:?}; use ms, s or m")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|err| err.to_string())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5h").is_err());
    }

    #[test]
    fn boolean_flags_take_boolish_env_values() {
        let parse = |args: &[&str]| Cli::try_parse_from(args).expect("valid command line");
        let Command::Get(get) = parse(&["holdfastctl", "get", "population", "UA-1", "--stale"]).command else {
            panic!("expected get");
        };
        assert!(get.stale);
        let Command::Get(get) = parse(&["holdfastctl", "get", "population", "UA-1"]).command else {
            panic!("expected get");
        };
        assert!(!get.stale);
    }

    #[test]
    fn endpoints_split_on_commas() {
        let cli = Cli::try_parse_from(["holdfastctl", "--endpoints", "a:1,b:2", "get", "population", "UA-1"])
            .expect("valid command line");
        assert_eq!(cli.endpoints, ["a:1", "b:2"]);
    }
}
