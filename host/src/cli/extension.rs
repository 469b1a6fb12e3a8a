//! `pbx-host extension …`: the PBX's extensions, through the admin API.

use clap::Subcommand;
use serde_json::json;

use super::client::AdminClient;
use super::out::{self, outln};
use super::print_json;

#[derive(Subcommand)]
pub enum ExtensionCommand {
    /// Add or replace an extension.
    Add {
        /// The extension number, e.g. 1001.
        number: String,
        /// Who it belongs to.
        #[arg(long)]
        name: String,
        /// Their e-mail address.
        #[arg(long)]
        email: Option<String>,
    },
    /// The extensions.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove an extension.
    Remove {
        /// The extension number.
        number: String,
    },
}

pub async fn run(client: AdminClient, command: ExtensionCommand) -> anyhow::Result<()> {
    match command {
        ExtensionCommand::Add {
            number,
            name,
            email,
        } => {
            let saved = client
                .post(
                    "/extensions",
                    &json!({"number": number, "name": name, "email": email}),
                )
                .await?;
            outln!("extension {} saved", out::field(&saved["number"], "?"));
        }
        ExtensionCommand::List { json } => {
            let list = client.get("/extensions").await?;
            if json {
                print_json(&list)?;
            } else {
                outln!("{:<8} {:<30} E-MAIL", "NUMBER", "NAME");
                for e in list["extensions"].as_array().into_iter().flatten() {
                    outln!(
                        "{:<8} {:<30} {}",
                        out::field(&e["number"], "?"),
                        out::field(&e["name"], "?"),
                        out::field(&e["email"], "-"),
                    );
                }
            }
        }
        ExtensionCommand::Remove { number } => {
            client.delete(&format!("/extensions/{number}")).await?;
            outln!("extension {number} removed");
        }
    }
    Ok(())
}
