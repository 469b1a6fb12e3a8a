//! `pbx-host crm …`: a CRM plugin's set-up from the command line: status,
//! the Callback URL, its settings (`crm_settings`), authorizing and
//! disconnecting, its users and associations (`crm_users`). Every command
//! speaks to the running host's admin API and knows no CRM: what a CRM
//! needs, its plugin describes.

use anyhow::Context;
use clap::Subcommand;
use serde_json::{Value, json};

use super::client::AdminClient;
use super::crm_settings::{self, SettingsCommand};
use super::crm_users::{self, UsersCommand};
use super::out::{self, outln};
use super::print_json;

#[derive(Subcommand)]
pub enum CrmCommand {
    /// The integration's status.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// The Callback URL to enter in the CRM's app.
    CallbackUrl,
    /// The CRM's name and the settings its plugin takes.
    Describe {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// The plugin's settings: list them, or set some.
    Settings {
        #[command(subcommand)]
        command: SettingsCommand,
    },
    /// Save settings as flags named after their keys: --KEY VALUE, and
    /// --KEY-stdin to read one from standard input (secrets must come that
    /// way). `pbx-host crm describe` lists the plugin's keys.
    Configure {
        /// --KEY VALUE or --KEY-stdin, per setting.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
        settings: Vec<String>,
    },
    /// Start the authorization: open the CRM's consent page and wait.
    Authorize {
        /// Print the consent page's URL instead of opening a browser.
        #[arg(long)]
        no_browser: bool,
    },
    /// Revoke the CRM session and forget the tokens (settings are kept).
    Disconnect,
    /// The CRM's users.
    Users {
        #[command(subcommand)]
        command: UsersCommand,
    },
    /// Associate CRM users with extensions: automatically by e-mail
    /// (`--auto`), or one user with one extension.
    Associate {
        /// Propose associations by e-mail, show them, and save on confirmation.
        #[arg(long, conflicts_with_all = ["user", "extension"])]
        auto: bool,
        /// Save the proposal without asking.
        #[arg(long, requires = "auto")]
        yes: bool,
        /// The user's CRM id or e-mail address.
        #[arg(required_unless_present = "auto")]
        user: Option<String>,
        /// The extension number.
        #[arg(required_unless_present = "auto")]
        extension: Option<String>,
    },
    /// Remove a user's association.
    Unassociate {
        /// The user's CRM id or e-mail address.
        user: String,
    },
}

/// The plugin `crm` commands talk to: the one given, else the only CRM
/// plugin installed.
pub async fn plugin_id(client: &AdminClient, given: Option<String>) -> anyhow::Result<String> {
    if let Some(id) = given {
        return Ok(id);
    }
    let list = client.get("/plugins").await?;
    let active: Vec<String> = list["plugins"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| !p["active"].is_null())
        .filter_map(|p| p["id"].as_str().map(str::to_string))
        .collect();
    match active.as_slice() {
        [only] => Ok(only.clone()),
        [] => anyhow::bail!(
            "no CRM plugin is active; install one with `pbx-host plugin install FILE`"
        ),
        several => anyhow::bail!(
            "several CRM plugins are active ({}); choose one with --plugin ID",
            several.join(", ")
        ),
    }
}

/// Run a `crm` subcommand against `plugin`.
pub async fn run(client: &AdminClient, plugin: &str, command: CrmCommand) -> anyhow::Result<()> {
    match command {
        CrmCommand::Status { json } => {
            let status = client.get(&format!("/crm/{plugin}/status")).await?;
            if json {
                print_json(&status)?;
            } else {
                let crm = client
                    .get(&format!("/crm/{plugin}/describe"))
                    .await
                    .ok()
                    .and_then(|info| info["crm_name"].as_str().map(str::to_string))
                    .unwrap_or_else(|| plugin.to_string());
                for line in status_prose(&crm, &status) {
                    outln!("{line}");
                }
            }
        }
        CrmCommand::CallbackUrl => {
            let url = client.get(&format!("/crm/{plugin}/callback-url")).await?;
            outln!("{}", out::field(&url["callback_url"], "?"));
        }
        CrmCommand::Describe { json } => crm_settings::describe(client, plugin, json).await?,
        CrmCommand::Settings { command } => crm_settings::run(client, plugin, command).await?,
        CrmCommand::Configure { settings } => {
            crm_settings::configure(client, plugin, settings).await?
        }
        CrmCommand::Authorize { no_browser } => authorize(client, plugin, no_browser).await?,
        CrmCommand::Users { command } => crm_users::run(client, plugin, command).await?,
        CrmCommand::Associate {
            auto: true, yes, ..
        } => crm_users::associate_auto(client, plugin, yes).await?,
        CrmCommand::Associate {
            user, extension, ..
        } => {
            let (Some(user), Some(extension)) = (user, extension) else {
                anyhow::bail!("give a user (id or e-mail) and an extension, or --auto");
            };
            crm_users::associate(client, plugin, &user, Some(&extension)).await?;
        }
        CrmCommand::Unassociate { user } => {
            crm_users::associate(client, plugin, &user, None).await?
        }
        CrmCommand::Disconnect => {
            let status = client
                .post(&format!("/crm/{plugin}/disconnect"), &json!({}))
                .await?;
            outln!("Status: {}", out::field(&status["message"], "?"));
            if let Some(problem) = status["problem"].as_str() {
                outln!("Problem: {}", out::text(problem));
            }
        }
    }
    Ok(())
}

/// `crm status` for a person: a sentence for the state ("Connected to
/// Salesforce as … (org …)."), what to do next when not connected, then
/// any problem and the call journal's backlog. CRM text is escaped.
fn status_prose(crm: &str, status: &Value) -> Vec<String> {
    let crm = out::text(crm);
    let message = out::field(&status["message"], "");
    let account = status["account"].as_str().map(out::text);
    let authorize = "run `pbx-host crm authorize` (it opens the consent page)";
    let mut lines = match (status["state"].as_str(), &account) {
        (Some("Connected"), Some(account)) => vec![format!("Connected to {crm} as {account}.")],
        (Some("Connected"), None) => vec![format!("Connected to {crm}.")],
        (Some("NotConfigured"), _) => vec![
            sentence(&message),
            format!(
                "Next: `pbx-host crm describe` lists its settings; save them with `pbx-host crm configure --KEY VALUE …`, then {authorize}."
            ),
        ],
        (Some("Configured"), _) => vec![
            format!("{crm} is configured but not authorized yet."),
            format!("Next: {authorize}."),
        ],
        (Some("ReauthorizationNeeded"), _) => {
            vec![sentence(&message), format!("Next: {authorize}.")]
        }
        (Some("Disconnected"), _) => vec![
            format!("Disconnected from {crm}; its settings and associations are kept."),
            format!("Next: to connect again, {authorize}."),
        ],
        _ => vec![sentence(&format!("{crm}: {message}"))],
    };
    if let Some(usage) = api_usage(status) {
        lines.push(format!("{crm} API requests today: {usage}."));
    }
    if let Some(problem) = status["problem"].as_str() {
        lines.push(sentence(&format!("Problem: {}", out::text(problem))));
    }
    match status["pending_call_logs"].as_u64() {
        None => {}
        Some(0) => lines.push(format!("No call logs are waiting to be written to {crm}.")),
        Some(1) => lines.push(format!("1 call log is waiting to be written to {crm}.")),
        Some(n) => lines.push(format!("{n} call logs are waiting to be written to {crm}.")),
    }
    match status["queued_call_events"].as_u64() {
        Some(0) | None => {}
        Some(1) => lines.push("1 call event is kept by the host for another delivery.".into()),
        Some(n) => lines.push(format!(
            "{n} call events are kept by the host for another delivery."
        )),
    }
    lines
}

/// The CRM org's API use in a status, "13,500 of 15,000 (90 %)", when the
/// plugin reports it (contract 0.5.0).
pub fn api_usage(status: &Value) -> Option<String> {
    let used = status["api_usage"]["used"].as_u64()?;
    let limit = status["api_usage"]["limit"].as_u64()?;
    let percent = if limit == 0 {
        0
    } else {
        u128::from(used) * 100 / u128::from(limit)
    };
    Some(format!(
        "{} of {} ({percent} %)",
        thousands(used),
        thousands(limit)
    ))
}

/// `n` with a comma between thousands: 15,000.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `text` as a sentence: a full stop unless it ends in punctuation already.
fn sentence(text: &str) -> String {
    let text = text.trim_end();
    if text.ends_with(['.', '!', '?']) {
        text.to_string()
    } else {
        format!("{text}.")
    }
}

/// Start an authorization; unless `no_browser`, open the consent page and
/// wait for the callback's outcome.
async fn authorize(client: &AdminClient, plugin: &str, no_browser: bool) -> anyhow::Result<()> {
    let before = client.get(&format!("/crm/{plugin}/status")).await?;
    let previous = before["last_authorization"]["at_ms"].as_u64();
    let authorization = client
        .post(&format!("/crm/{plugin}/authorize"), &json!({}))
        .await?;
    let url = authorization["url"]
        .as_str()
        .context("the host returned no URL")?;
    // The host checks it too; a page that is no https page is never
    // printed for pasting nor handed to xdg-open.
    crate::server::check_authorization_url(plugin, url).map_err(anyhow::Error::msg)?;
    if no_browser {
        outln!("{}", out::text(url));
        return Ok(());
    }
    let opened = std::process::Command::new("xdg-open")
        .arg(url)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !opened {
        out::error_line(format_args!(
            "Open this page in a browser to authorize:\n{}",
            out::text(url)
        ));
    }
    let expires = authorization["expires_at_ms"].as_u64().unwrap_or(0);
    let spinner = indicatif::ProgressBar::new_spinner();
    spinner.set_message("Waiting for the consent in the browser...");
    spinner.enable_steady_tick(std::time::Duration::from_millis(120));
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let status = client.get(&format!("/crm/{plugin}/status")).await?;
        let last = &status["last_authorization"];
        if last["at_ms"].as_u64().is_some() && last["at_ms"].as_u64() != previous {
            spinner.finish_and_clear();
            if last["ok"].as_bool() == Some(true) {
                outln!(
                    "Authorization succeeded! Status: {}",
                    out::field(&status["message"], "?")
                );
                return Ok(());
            }
            anyhow::bail!(
                "{}",
                last["message"].as_str().unwrap_or("authorization failed")
            );
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        if expires > 0 && now > expires {
            spinner.finish_and_clear();
            anyhow::bail!("the authorization attempt expired; run `pbx-host crm authorize` again");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_api_use_is_worded_with_thousands_and_percent() {
        let connected = json!({"state": "Connected", "account": "a@b", "api_usage": {"used": 13_599, "limit": 15_000}});
        assert_eq!(
            status_prose("Salesforce", &connected),
            vec![
                "Connected to Salesforce as a@b.",
                "Salesforce API requests today: 13,599 of 15,000 (90 %)."
            ]
        );
        let odd = json!({"api_usage": {"used": 1_000_001, "limit": 0}});
        assert_eq!(api_usage(&odd).as_deref(), Some("1,000,001 of 0 (0 %)"));
        assert_eq!(api_usage(&json!({"api_usage": null})), None);
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
    }

    #[test]
    fn the_status_reads_as_prose_with_the_next_step() {
        let connected = json!({"state": "Connected", "account": "admin@example.org (org 00D000000000001)", "message": "Connected to Salesforce", "problem": null, "pending_call_logs": 0});
        assert_eq!(
            status_prose("Salesforce", &connected),
            vec![
                "Connected to Salesforce as admin@example.org (org 00D000000000001).",
                "No call logs are waiting to be written to Salesforce."
            ]
        );
        let not_configured = json!({"state": "NotConfigured", "message": "Not configured: enter the Consumer Key and Consumer Secret of your Salesforce app", "pending_call_logs": 2, "queued_call_events": 1});
        let lines = status_prose("Salesforce", &not_configured);
        assert_eq!(
            lines[0],
            "Not configured: enter the Consumer Key and Consumer Secret of your Salesforce app."
        );
        assert!(lines[1].contains("pbx-host crm configure"), "{lines:?}");
        assert_eq!(
            lines[2],
            "2 call logs are waiting to be written to Salesforce."
        );
        assert_eq!(
            lines[3],
            "1 call event is kept by the host for another delivery."
        );
        let disconnected = json!({"state": "Disconnected", "message": "Disconnected", "problem": "revocation failed\u{1b}[2J"});
        let lines = status_prose("Salesforce", &disconnected);
        assert!(lines[1].contains("pbx-host crm authorize"), "{lines:?}");
        assert!(
            lines[2].contains("\\u{1b}") && !lines[2].contains('\u{1b}'),
            "{lines:?}"
        );
    }
}
