//! `pbx-host agent …`: who is signed in to the portal and the agent pages,
//! and signing agents out, through the admin API.

use clap::Subcommand;
use serde_json::json;

use super::client::AdminClient;
use super::out::{self, outln};
use super::print_json;

#[derive(Subcommand)]
pub enum AgentCommand {
    /// Who is signed in: extension, how, since, last seen, and the handle
    /// `agent sign-out --handle` takes.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Sign out every agent of an extension, or one session by its handle.
    SignOut {
        /// The extension number.
        #[arg(required_unless_present = "handle", conflicts_with = "handle")]
        number: Option<String>,
        /// One session's handle, from `agent list`.
        #[arg(long)]
        handle: Option<String>,
    },
}

fn time(ms: &serde_json::Value) -> String {
    let secs = ms.as_u64().unwrap_or(0) / 1000;
    let ago = crate::now_ms() / 1000 - secs.min(crate::now_ms() / 1000);
    format!("{ago}s ago")
}

pub async fn run(client: AdminClient, command: AgentCommand) -> anyhow::Result<()> {
    match command {
        AgentCommand::List { json } => {
            let list = client.get("/sessions").await?;
            if json {
                print_json(&list)?;
                return Ok(());
            }
            let mut table =
                out::Table::new(&["HANDLE", "WHO", "EXTENSION", "HOW", "SINCE", "LAST SEEN"]);
            for s in list["sessions"].as_array().into_iter().flatten() {
                let how = match s["how"].as_str() {
                    Some("crm") => format!(
                        "{} user {}",
                        s["plugin"].as_str().unwrap_or("?"),
                        s["crm_user"].as_str().unwrap_or("?")
                    ),
                    Some(other) => other.to_string(),
                    None => "admin token".to_string(),
                };
                table.row([
                    out::field(&s["handle"], "?").into_owned(),
                    out::field(&s["kind"], "?").into_owned(),
                    out::field(&s["extension"], "-").into_owned(),
                    out::text(&how).into_owned(),
                    time(&s["since_ms"]),
                    time(&s["last_seen_ms"]),
                ]);
            }
            table.print()?;
        }
        AgentCommand::SignOut {
            number: Some(number),
            ..
        } => {
            let answer = client
                .post(&format!("/extensions/{number}/sign-out"), &json!({}))
                .await?;
            outln!(
                "extension {number}: {} session(s) ended",
                answer["ended"].as_u64().unwrap_or(0)
            );
        }
        AgentCommand::SignOut {
            handle: Some(handle),
            ..
        } => {
            client.delete(&format!("/sessions/{handle}")).await?;
            outln!("session {handle} ended");
        }
        AgentCommand::SignOut { .. } => {
            anyhow::bail!("name an extension or a --handle (from `pbx-host agent list`)")
        }
    }
    Ok(())
}
