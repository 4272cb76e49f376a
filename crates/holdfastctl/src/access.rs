//! `holdfastctl access grant|revoke|list|whoami` and `holdfastctl audit
//! who-read|trail`.

use holdfast_client::{AuditEntry, Client, Grant};
use serde_json::{json, Value};

use crate::cli::{AccessCommand, AuditCommand, WriteOut};
use crate::output::{format_time_ms, yes_no, Table};

pub async fn access(client: &Client, command: AccessCommand, out: WriteOut) -> anyhow::Result<()> {
    match command {
        AccessCommand::Grant(args) => {
            let permissions: Vec<&str> = args.permissions.iter().map(String::as_str).collect();
            let revision = client.grant(&args.identity, &args.scope, &permissions).await?;
            changed(out, "granted", &args.identity, &args.scope, &args.permissions, revision);
        }
        AccessCommand::Revoke(args) => {
            let permissions: Vec<&str> = args.permissions.iter().map(String::as_str).collect();
            let revision = client.revoke(&args.identity, &args.scope, &permissions).await?;
            changed(out, "revoked", &args.identity, &args.scope, &args.permissions, revision);
        }
        AccessCommand::List => {
            let list = client.list_access().await?;
            match out {
                WriteOut::Json => {
                    let doc = json!({
                        "grants": list.grants.iter().map(grant_json).collect::<Vec<_>>(),
                        "configured_admins": list.configured_admins,
                    });
                    println!("{doc}");
                }
                WriteOut::Table => {
                    if list.grants.is_empty() {
                        println!("no grants");
                    } else {
                        print!("{}", grants_table(&list.grants).render());
                    }
                    if !list.configured_admins.is_empty() {
                        println!("cluster admins by node config: {}", list.configured_admins.join(", "));
                    }
                }
            }
        }
        AccessCommand::Whoami => {
            let me = client.who_am_i().await?;
            match out {
                WriteOut::Json => {
                    let doc = json!({
                        "identity": me.identity,
                        "authenticated": me.authenticated,
                        "cluster_admin": me.cluster_admin,
                        "grants": me.grants.iter().map(grant_json).collect::<Vec<_>>(),
                    });
                    println!("{doc}");
                }
                WriteOut::Table => {
                    if me.authenticated {
                        println!("identity: {}", me.identity);
                    } else {
                        println!("not authenticated (plaintext connection)");
                    }
                    println!("cluster admin: {}", yes_no(me.cluster_admin));
                    if me.grants.is_empty() {
                        println!("no grants");
                    } else {
                        print!("{}", grants_table(&me.grants).render());
                    }
                }
            }
        }
    }
    Ok(())
}

fn changed(out: WriteOut, verb: &str, identity: &str, scope: &str, permissions: &[String], revision: u64) {
    match out {
        WriteOut::Json => println!(
            "{}",
            json!({ "identity": identity, "scope": scope, "permissions": permissions, verb: true, "revision": revision })
        ),
        WriteOut::Table => {
            println!("{verb} {} on {scope} for {identity} (revision {revision})", permissions.join(","))
        }
    }
}

fn grant_json(g: &Grant) -> Value {
    json!({ "identity": g.identity, "scope": g.scope, "permissions": g.permissions })
}

fn grants_table(grants: &[Grant]) -> Table {
    let mut table = Table::new(&["IDENTITY", "SCOPE", "PERMISSIONS"]);
    for g in grants {
        table.push(vec![g.identity.clone(), g.scope.clone(), g.permissions.join(",")]);
    }
    table
}

pub async fn audit(client: &Client, command: AuditCommand, out: WriteOut) -> anyhow::Result<()> {
    let (args, reads_only) = match command {
        AuditCommand::WhoRead(args) => (args, true),
        AuditCommand::Trail(args) => (args, false),
    };
    let entries = client.audit_trail_all(&args.registry, args.id.as_bytes(), reads_only).await?;
    match out {
        WriteOut::Json => {
            let doc: Vec<Value> = entries.iter().map(entry_json).collect();
            println!("{}", json!({ "registry": args.registry, "id": args.id, "entries": doc }));
        }
        WriteOut::Table if entries.is_empty() => println!("no recorded access"),
        WriteOut::Table => {
            let mut table = Table::new(&["TIME", "IDENTITY", "OP", "REVISION", "OUTCOME", "NODE"]);
            for e in &entries {
                table.push(vec![
                    format_time_ms(e.time_ms),
                    e.identity.clone(),
                    e.op.clone(),
                    e.revision.to_string(),
                    e.outcome.clone(),
                    e.node.to_string(),
                ]);
            }
            print!("{}", table.render());
        }
    }
    Ok(())
}

fn entry_json(e: &AuditEntry) -> Value {
    json!({
        "time_ms": e.time_ms,
        "identity": e.identity,
        "op": e.op,
        "revision": e.revision,
        "outcome": e.outcome,
        "node": e.node,
    })
}
