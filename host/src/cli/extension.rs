//! `pbx-host extension …`: the PBX's extensions, through the admin API.

use std::io::IsTerminal;

use anyhow::{Context, bail};
use clap::Subcommand;
use serde_json::json;

use super::client::AdminClient;
use super::out::{self, out, outln};
use super::print_json;

#[derive(Subcommand)]
pub enum ExtensionCommand {
    /// Add an extension (an existing number is refused unless --replace).
    Add {
        /// The extension number, e.g. 1001.
        number: String,
        /// Replace the extension if the number exists.
        #[arg(long)]
        replace: bool,
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
    /// Remove an extension (its agents are signed out); asks first.
    Remove {
        /// The extension number.
        number: String,
        /// Do not ask (needed when standard input is not a terminal).
        #[arg(long)]
        yes: bool,
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

/// Ask on the terminal before removing `number`, naming whose it is.
/// Without a terminal there is no one to ask: refuse, naming `--yes`.
async fn confirm_removal(client: &AdminClient, number: &str) -> anyhow::Result<()> {
    let list = client.get("/extensions").await?;
    let Some(ext) = list["extensions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["number"].as_str() == Some(number))
    else {
        bail!(
            "extension {} does not exist; `pbx-host extension list` shows them",
            out::text(number)
        );
    };
    if !std::io::stdin().is_terminal() {
        bail!(
            "not removing extension {} without confirmation: standard input is not a terminal; add --yes to remove it",
            out::text(number)
        );
    }
    let whose = match ext["email"].as_str() {
        Some(email) => format!("{}, {}", out::field(&ext["name"], "?"), out::text(email)),
        None => out::field(&ext["name"], "?").into_owned(),
    };
    out!(
        "Remove extension {} ({whose})? Its agents are signed out and its password is dropped. [y/N] ",
        out::text(number)
    );
    let mut answer = String::new();
    std::io::stdin()
        .read_line(&mut answer)
        .context("cannot read the answer")?;
    if !matches!(answer.trim(), "y" | "Y" | "yes") {
        bail!("extension {} kept", out::text(number));
    }
    Ok(())
}

pub async fn run(client: AdminClient, command: ExtensionCommand) -> anyhow::Result<()> {
    match command {
        ExtensionCommand::Add {
            number,
            replace,
            name,
            email,
        } => {
            let path = if replace {
                "/extensions?replace=yes"
            } else {
                "/extensions"
            };
            let saved = client
                .post(
                    path,
                    &json!({"number": number, "name": name, "email": email}),
                )
                .await?;
            outln!(
                "extension {} {}",
                out::field(&saved["number"], "?"),
                if replace { "saved" } else { "added" }
            );
        }
        ExtensionCommand::List { json } => {
            let list = client.get("/extensions").await?;
            if json {
                print_json(&list)?;
            } else {
                let mut table = out::Table::new(&["NUMBER", "NAME", "E-MAIL"]);
                for e in list["extensions"].as_array().into_iter().flatten() {
                    table.row([
                        out::field(&e["number"], "?"),
                        out::field(&e["name"], "?"),
                        out::field(&e["email"], "-"),
                    ]);
                }
                table.print()?;
            }
        }
        ExtensionCommand::Remove { number, yes } => {
            if !yes {
                confirm_removal(&client, &number).await?;
            }
            client.delete(&format!("/extensions/{number}")).await?;
            outln!("extension {} removed", out::text(&number));
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
