//! `holdfastctl keys rotate|status`: the data keys that seal records.

use holdfast_client::{Client, KeyStatus};
use serde_json::{json, Value};

use crate::cli::{KeysCommand, WriteOut};
use crate::output::{yes_no, Table};

pub async fn keys(client: &Client, command: KeysCommand, out: WriteOut) -> anyhow::Result<()> {
    let status = match command {
        KeysCommand::Rotate => client.rotate_key().await?,
        KeysCommand::Status => client.key_status().await?,
    };
    print_status(&status, out);
    Ok(())
}

fn print_status(status: &KeyStatus, out: WriteOut) {
    match out {
        WriteOut::Json => {
            let keys: Vec<Value> = status
                .keys
                .iter()
                .map(|k| json!({ "id": k.id, "current": k.current, "revisions": k.revisions }))
                .collect();
            let doc = json!({
                "encrypted": status.encrypted,
                "current_key_id": status.current_key_id,
                "keys": keys,
                "revisions_to_reseal": status.revisions_to_reseal,
                "applied_revision": status.applied_revision,
            });
            println!("{doc}");
        }
        WriteOut::Table => {
            if !status.encrypted {
                println!("this cluster stores plaintext (insecure_plaintext); there are no keys");
                return;
            }
            let mut table = Table::new(&["KEY ID", "CURRENT", "REVISIONS"]);
            for k in &status.keys {
                table.push(vec![k.id.to_string(), yes_no(k.current).to_string(), k.revisions.to_string()]);
            }
            print!("{}", table.render());
            println!("revisions still to re-seal: {}", status.revisions_to_reseal);
        }
    }
}
