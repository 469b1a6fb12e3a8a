//! `pbx-host extension …`: the PBX's extensions, through the admin API.

use anyhow::Context;
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
    /// Remove an extension (its agents are signed out).
    Remove {
        /// The extension number.
        number: String,
    },
    /// The extension's password, for agents without a CRM account.
    Password {
        #[command(subcommand)]
        command: PasswordCommand,
    },
}

#[derive(Subcommand)]
pub enum PasswordCommand {
    /// Set or replace it, read from standard input (never from the command
    /// line, where other users could see it).
    Set {
        /// The extension number.
        number: String,
        /// Read the password from standard input (its first line).
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// Remove it: password sign-in ends for the extension.
    Clear {
        /// The extension number.
        number: String,
    },
}

/// The first line of standard input, without its line ending.
fn password_from_stdin() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .context("cannot read the password from standard input")?;
    let password = line.trim_end_matches(['\n', '\r']).to_string();
    if password.is_empty() {
        anyhow::bail!(
            "no password on standard input; e.g. `printf '%s\\n' \"$PW\" | pbx-host extension password set 1001 --password-stdin`"
        );
    }
    Ok(password)
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
        ExtensionCommand::Password {
            command: PasswordCommand::Set { number, .. },
        } => {
            let password = password_from_stdin()?;
            client
                .put(
                    &format!("/extensions/{number}/password"),
                    &json!({ "password": password }),
                )
                .await?;
            outln!("extension {number}: password set");
        }
        ExtensionCommand::Password {
            command: PasswordCommand::Clear { number },
        } => {
            client
                .delete(&format!("/extensions/{number}/password"))
                .await?;
            outln!("extension {number}: password cleared");
        }
    }
    Ok(())
}
