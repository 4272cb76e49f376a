//! Record commands: put, get, delete, history, scan.

use std::io::Read;

use anyhow::{bail, Context};
use holdfast_client::{
    new_request_id, Client, ClientError, Consistency, Outcome, ReadOptions, WriteOptions, WriteResult,
};
use serde_json::json;

use crate::cli::{DeleteArgs, GetArgs, HistoryArgs, PutArgs, ScanArgs, WriteFlags, WriteOut};
use crate::output::{bytes_for_table, record_json, record_row, Table, RECORD_HEADERS};

/// `--all` follows pages until the server says there are no more; a server
/// that never says so must not loop the CLI forever.
const PAGES_MAX: usize = 100_000;

/// Values larger than this are refused before reading further from stdin;
/// the server's own limit is lower, this only bounds the CLI's memory.
const STDIN_VALUE_BYTES_MAX: u64 = 64 * 1024 * 1024;

pub async fn put(client: &Client, args: PutArgs, out: WriteOut) -> anyhow::Result<()> {
    let value = read_value(&args.value)?;
    let (options, request_id) = write_options(args.write);
    let result =
        client.put(&args.registry, &args.id, value, options).await.map_err(|err| write_error(err, &request_id))?;
    print_write(&result, out);
    Ok(())
}

pub async fn delete(client: &Client, args: DeleteArgs, out: WriteOut) -> anyhow::Result<()> {
    let (options, request_id) = write_options(args.write);
    let result = client.delete(&args.registry, &args.id, options).await.map_err(|err| write_error(err, &request_id))?;
    print_write(&result, out);
    Ok(())
}

pub async fn get(client: &Client, args: GetArgs, out: WriteOut) -> anyhow::Result<()> {
    let options = ReadOptions {
        consistency: if args.stale { Consistency::Stale } else { Consistency::Linearizable },
        at_revision: args.at_revision,
    };
    let Some(record) = client.get(&args.registry, &args.id, options).await? else {
        bail!("record {}/{} not found", args.registry, args.id);
    };
    match out {
        WriteOut::Json => println!("{}", record_json(args.id.as_bytes(), &record)),
        WriteOut::Table => {
            let mut table = Table::new(&RECORD_HEADERS);
            table.push(record_row(&record));
            print!("{}", table.render());
        }
    }
    Ok(())
}

pub async fn history(client: &Client, args: HistoryArgs, out: WriteOut) -> anyhow::Result<()> {
    let mut revisions = Vec::new();
    let mut after = args.after_revision;
    let mut next = None;
    for _ in 0..PAGES_MAX {
        let page = client.history(&args.registry, &args.id, after, args.page.limit).await?;
        revisions.extend(page.revisions);
        next = page.next_after_revision;
        match next {
            Some(revision) if args.page.all && revision > after => after = revision,
            _ => break,
        }
    }
    if revisions.is_empty() && args.after_revision == 0 {
        bail!("record {}/{} has no history", args.registry, args.id);
    }
    match out {
        WriteOut::Json => {
            let revisions: Vec<_> = revisions.iter().map(|record| record_json(args.id.as_bytes(), record)).collect();
            println!("{}", json!({ "revisions": revisions, "next_after_revision": next }));
        }
        WriteOut::Table => {
            let mut table = Table::new(&RECORD_HEADERS);
            for record in &revisions {
                table.push(record_row(record));
            }
            print!("{}", table.render());
            if let Some(revision) = next {
                eprintln!("more revisions follow: --after-revision {revision}, or --all");
            }
        }
    }
    Ok(())
}

pub async fn scan(client: &Client, args: ScanArgs, out: WriteOut) -> anyhow::Result<()> {
    let mut token = match &args.page_token {
        Some(text) => Some(hex::decode(text).context("--page-token must be hex")?),
        None => None,
    };
    let mut entries = Vec::new();
    for _ in 0..PAGES_MAX {
        let page = client.scan(&args.registry, token.as_deref(), args.page.limit).await?;
        entries.extend(page.entries);
        let repeated = page.next_page_token.is_some() && page.next_page_token == token;
        token = page.next_page_token;
        if !args.page.all || token.is_none() || repeated {
            break;
        }
    }
    let next = token.as_deref().map(hex::encode);
    match out {
        WriteOut::Json => {
            let entries: Vec<_> = entries.iter().map(|entry| record_json(&entry.record_id, &entry.record)).collect();
            println!("{}", json!({ "entries": entries, "next_page_token": next }));
        }
        WriteOut::Table => {
            let mut headers = vec!["RECORD ID"];
            headers.extend(RECORD_HEADERS);
            let mut table = Table::new(&headers);
            for entry in &entries {
                let mut row = vec![bytes_for_table(&entry.record_id)];
                row.extend(record_row(&entry.record));
                table.push(row);
            }
            print!("{}", table.render());
            if let Some(token) = next {
                eprintln!("more records follow: --page-token {token}, or --all");
            }
        }
    }
    Ok(())
}

/// The write options, with the request id fixed up front so an "outcome
/// unknown" error can tell the user which id to retry with.
fn write_options(flags: WriteFlags) -> (WriteOptions, String) {
    let request_id = flags.request_id.filter(|id| !id.is_empty()).unwrap_or_else(new_request_id);
    let options = WriteOptions {
        if_revision: flags.if_revision,
        reason: flags.reason,
        actor: flags.actor,
        request_id: Some(request_id.clone()),
    };
    (options, request_id)
}

/// Says plainly whether the failed write happened, and how to finish an
/// unknown one safely.
fn write_error(err: ClientError, request_id: &str) -> anyhow::Error {
    match err.outcome() {
        Outcome::NotApplied => anyhow::anyhow!("write not applied: {err}"),
        Outcome::Unknown => anyhow::anyhow!(
            "write outcome unknown (retry with --request-id {request_id} to apply it at most once): {err}"
        ),
    }
}

fn print_write(result: &WriteResult, out: WriteOut) {
    match out {
        WriteOut::Json => println!(
            "{}",
            json!({
                "revision": result.revision,
                "duplicate": result.duplicate,
                "request_id": result.request_id,
            })
        ),
        WriteOut::Table if result.duplicate => {
            println!("OK revision {} (already applied earlier under request id {})", result.revision, result.request_id)
        }
        WriteOut::Table => println!("OK revision {}", result.revision),
    }
}

/// The value argument, or standard input for `-`.
fn read_value(arg: &str) -> anyhow::Result<Vec<u8>> {
    if arg != "-" {
        return Ok(arg.as_bytes().to_vec());
    }
    let mut value = Vec::new();
    std::io::stdin()
        .take(STDIN_VALUE_BYTES_MAX + 1)
        .read_to_end(&mut value)
        .context("reading the value from standard input")?;
    if value.len() as u64 > STDIN_VALUE_BYTES_MAX {
        bail!("value on standard input is over {STDIN_VALUE_BYTES_MAX} bytes");
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_errors_say_whether_the_write_happened() {
        let refused = ClientError::InvalidArgument("value too large".to_owned());
        assert!(write_error(refused, "id-1").to_string().starts_with("write not applied"));
        let unknown = ClientError::Internal("boom".to_owned());
        let message = write_error(unknown, "id-1").to_string();
        assert!(message.starts_with("write outcome unknown"));
        assert!(message.contains("--request-id id-1"));
    }

    #[test]
    fn request_id_is_fixed_before_sending() {
        let flags = |request_id: Option<&str>| WriteFlags {
            if_revision: None,
            reason: String::new(),
            actor: String::new(),
            request_id: request_id.map(str::to_owned),
        };
        let (options, id) = write_options(flags(Some("given")));
        assert_eq!((options.request_id.as_deref(), id.as_str()), (Some("given"), "given"));
        let (options, id) = write_options(flags(None));
        assert_eq!(options.request_id, Some(id));
    }
}
