//! Cluster commands: member list and changes, endpoint status.

use anyhow::bail;
use holdfast_client::{display_endpoint, Client, ClientError, Member, Members, NodeStatus, Outcome, Placement};
use serde_json::{json, Value};

use crate::cli::{AddLearnerArgs, ForceArgs, Jurisdiction, MemberCommand, WriteOut};
use crate::output::{yes_no, Table};

pub async fn member(client: &Client, command: MemberCommand, out: WriteOut) -> anyhow::Result<()> {
    match command {
        MemberCommand::List => {
            let members = client.members().await?;
            print_members(&members, out);
        }
        MemberCommand::AddLearner(args) => {
            let members = add_learner(client, args).await?;
            print_member_list(&members, None, out);
        }
        MemberCommand::Promote(ForceArgs { id, force }) => {
            let members = client.promote(id, force).await.map_err(membership_error)?;
            print_member_list(&members, None, out);
        }
        MemberCommand::Remove(ForceArgs { id, force }) => {
            let members = client.remove(id, force).await.map_err(membership_error)?;
            print_member_list(&members, None, out);
        }
    }
    Ok(())
}

async fn add_learner(client: &Client, args: AddLearnerArgs) -> anyhow::Result<Vec<Member>> {
    let placement = Placement {
        region: args.region,
        zone: args.zone,
        provider: args.provider,
        jurisdiction: match args.jurisdiction {
            Jurisdiction::Domestic => "domestic",
            Jurisdiction::Foreign => "foreign",
        }
        .to_owned(),
    };
    client.add_learner(args.id, &args.addr, placement).await.map_err(membership_error)
}

/// Membership changes carry no request id, so the client does not resend
/// one that may have happened; the user should look before trying again.
fn membership_error(err: ClientError) -> anyhow::Error {
    match err.outcome() {
        Outcome::NotApplied => anyhow::anyhow!("membership not changed: {err}"),
        Outcome::Unknown => {
            anyhow::anyhow!("membership change outcome unknown (check `holdfastctl member list`): {err}")
        }
    }
}

fn print_members(members: &Members, out: WriteOut) {
    match out {
        WriteOut::Json => {
            let survival = &members.survival;
            println!(
                "{}",
                json!({
                    "members": members.members.iter().map(member_json).collect::<Vec<_>>(),
                    "leader_id": members.leader_id,
                    "survives_any_region": survival.any_region,
                    "survives_any_provider": survival.any_provider,
                    "survives_all_domestic_lost": survival.all_domestic_lost,
                    "fatal_regions": survival.fatal_regions,
                })
            );
        }
        WriteOut::Table => {
            print_member_list(&members.members, members.leader_id, out);
            let survival = &members.survival;
            println!();
            println!("survives loss of any one region:       {}", yes_no(survival.any_region));
            println!("survives loss of any one provider:     {}", yes_no(survival.any_provider));
            println!("survives loss of all domestic regions: {}", yes_no(survival.all_domestic_lost));
            if !survival.fatal_regions.is_empty() {
                println!("regions whose loss loses quorum:       {}", survival.fatal_regions.join(", "));
            }
        }
    }
}

fn print_member_list(members: &[Member], leader_id: Option<u64>, out: WriteOut) {
    if out == WriteOut::Json {
        let members: Vec<Value> = members.iter().map(member_json).collect();
        println!("{}", json!({ "members": members }));
        return;
    }
    let mut table = Table::new(&["ID", "ADDR", "REGION", "ZONE", "PROVIDER", "JURISDICTION", "VOTER", "LEADER"]);
    for member in members {
        let placement = &member.placement;
        table.push(vec![
            member.id.to_string(),
            member.addr.clone(),
            placement.region.clone(),
            placement.zone.clone(),
            placement.provider.clone(),
            placement.jurisdiction.clone(),
            yes_no(member.voter).to_owned(),
            if leader_id == Some(member.id) { "*" } else { "" }.to_owned(),
        ]);
    }
    print!("{}", table.render());
}

fn member_json(member: &Member) -> Value {
    json!({
        "id": member.id,
        "addr": member.addr,
        "region": member.placement.region,
        "zone": member.placement.zone,
        "provider": member.placement.provider,
        "jurisdiction": member.placement.jurisdiction,
        "voter": member.voter,
    })
}

/// Asks every endpoint; one that does not answer gets an error row, and the
/// command fails only after the whole table is printed.
pub async fn endpoint_status(client: &Client, out: WriteOut) -> anyhow::Result<()> {
    let statuses = client.status_all().await;
    let failed = statuses.iter().filter(|s| s.status.is_err()).count();
    match out {
        WriteOut::Json => {
            let rows: Vec<Value> = statuses
                .iter()
                .map(|entry| {
                    let endpoint = display_endpoint(&entry.endpoint);
                    match &entry.status {
                        Ok(status) => status_json(endpoint, status),
                        Err(err) => json!({ "endpoint": endpoint, "error": err.to_string() }),
                    }
                })
                .collect();
            println!("{}", Value::Array(rows));
        }
        WriteOut::Table => {
            let mut table =
                Table::new(&["ENDPOINT", "ID", "ADDR", "REGION", "ROLE", "TERM", "LEADER", "APPLIED", "ERROR"]);
            for entry in &statuses {
                let endpoint = display_endpoint(&entry.endpoint).to_owned();
                table.push(match &entry.status {
                    Ok(status) => status_row(endpoint, status),
                    Err(err) => {
                        let mut row = vec![endpoint];
                        row.extend(std::iter::repeat_n(String::new(), 7));
                        row.push(err.to_string());
                        row
                    }
                });
            }
            print!("{}", table.render());
        }
    }
    if failed > 0 {
        bail!("{failed} of {} endpoints did not answer", statuses.len());
    }
    Ok(())
}

fn status_row(endpoint: String, status: &NodeStatus) -> Vec<String> {
    vec![
        endpoint,
        status.id.to_string(),
        status.addr.clone(),
        status.placement.region.clone(),
        status.role.to_string(),
        status.term.to_string(),
        status.leader_id.map_or_else(|| "-".to_owned(), |id| id.to_string()),
        status.applied_revision.to_string(),
        String::new(),
    ]
}

fn status_json(endpoint: &str, status: &NodeStatus) -> Value {
    json!({
        "endpoint": endpoint,
        "id": status.id,
        "addr": status.addr,
        "region": status.placement.region,
        "zone": status.placement.zone,
        "provider": status.placement.provider,
        "jurisdiction": status.placement.jurisdiction,
        "role": status.role.to_string(),
        "term": status.term,
        "leader_id": status.leader_id,
        "leader_addr": status.leader_addr,
        "applied_revision": status.applied_revision,
        "last_log_index": status.last_log_index,
        "committed_index": status.committed_index,
        "state_digest": status.state_digest,
    })
}
