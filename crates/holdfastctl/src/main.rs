//! holdfastctl: the etcdctl-style client CLI for holdfast (entry point: parse, run, report one error line).

mod access;
mod cli;
mod cluster;
mod keys;
mod output;
mod records;

use std::process::ExitCode;

use clap::Parser;
use holdfast_client::{Client, ClientTls};

use crate::cli::{Cli, Command, EndpointCommand};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // One request at a time: a single-threaded runtime is all the CLI needs.
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => return report(&anyhow::Error::new(err).context("starting the async runtime")),
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => report(&err),
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let mut builder = Client::builder(cli.endpoints)
        .timeout(cli.timeout)
        .max_retries(cli.max_retries)
        .membership_timeout(cli.membership_timeout);
    if let Some(tls) = ClientTls::from_optional_files(cli.cacert.as_deref(), cli.cert.as_deref(), cli.key.as_deref())? {
        builder = builder.tls(tls);
    }
    let client = builder.build()?;
    let out = cli.write_out;
    match cli.command {
        Command::Put(args) => records::put(&client, args, out).await,
        Command::Get(args) => records::get(&client, args, out).await,
        Command::Delete(args) => records::delete(&client, args, out).await,
        Command::History(args) => records::history(&client, args, out).await,
        Command::Scan(args) => records::scan(&client, args, out).await,
        Command::Member(command) => cluster::member(&client, command, out).await,
        Command::Endpoint(EndpointCommand::Status) => cluster::endpoint_status(&client, out).await,
        Command::Keys(command) => keys::keys(&client, command, out).await,
        Command::Access(command) => access::access(&client, command, out).await,
        Command::Audit(command) => access::audit(&client, command, out).await,
    }
}

/// Prints the error and its causes as one line, so scripts can show or
/// log it as a unit.
fn report(err: &anyhow::Error) -> ExitCode {
    let message = format!("{err:#}").replace(['\n', '\r'], " ");
    eprintln!("Error: {message}");
    ExitCode::FAILURE
}
