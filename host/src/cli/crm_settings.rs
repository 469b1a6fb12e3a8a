//! `pbx-host crm settings …` and `crm configure`: a CRM plugin's settings,
//! by the keys the plugin describes (`crm describe` lists them), so the host
//! knows no CRM's settings. `configure` takes one flag per setting, `--KEY
//! VALUE`, or `--KEY-stdin` to read the value from standard input, and hands
//! them to the plugin under those keys. That is how the Salesforce-shaped
//! `crm configure --consumer-key K --consumer-secret-stdin --login-url U`
//! keeps working: the Salesforce plugin takes those keys (`login-url` is an
//! alias it maps onto its login host). An unknown key is the plugin's to
//! refuse, with the list of its settings.
//!
//! Secrets are never taken from the command line (shell history, the
//! process list): a setting the plugin describes as secret must come from
//! standard input.

use std::io::BufRead;

use anyhow::{Context, bail};
use clap::Subcommand;
use serde_json::json;

use super::client::AdminClient;
use super::out::{self, outln};
use super::print_json;

#[derive(Subcommand)]
pub enum SettingsCommand {
    /// The settings as stored (secrets only say whether they are set).
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Save settings: KEY=VALUE for each (`pbx-host crm describe` lists the
    /// keys); nothing given is changed.
    Set {
        /// KEY=VALUE pairs.
        #[arg(value_name = "KEY=VALUE")]
        pairs: Vec<String>,
        /// Read the value of the setting KEY from standard input (secrets
        /// must come this way).
        #[arg(long, value_name = "KEY")]
        secret_stdin: Option<String>,
    },
}

/// One setting the plugin describes.
struct Field {
    key: String,
    label: String,
    secret: bool,
}

/// The settings `plugin` describes.
async fn fields(client: &AdminClient, plugin: &str) -> anyhow::Result<Vec<Field>> {
    let info = client.get(&format!("/crm/{plugin}/describe")).await?;
    let fields = info["settings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| {
            Some(Field {
                key: f["key"].as_str()?.to_string(),
                label: f["label"].as_str().unwrap_or_default().to_string(),
                secret: f["kind"].as_str() == Some("Secret"),
            })
        })
        .collect();
    Ok(fields)
}

/// `crm settings …`.
pub async fn run(
    client: &AdminClient,
    plugin: &str,
    command: SettingsCommand,
) -> anyhow::Result<()> {
    match command {
        SettingsCommand::List { json } => {
            let stored = client.get(&format!("/crm/{plugin}/settings")).await?;
            if json {
                print_json(&stored)?;
                return Ok(());
            }
            let fields = fields(client, plugin).await?;
            let mut table = out::Table::new(&["KEY", "SETTING", "VALUE"]);
            for value in stored["settings"].as_array().into_iter().flatten() {
                let key = value["key"].as_str().unwrap_or("?");
                let label = fields
                    .iter()
                    .find(|f| f.key == key)
                    .map_or(key, |f| f.label.as_str());
                let shown = match (value["value"].as_str(), value["is_set"].as_bool()) {
                    (Some(v), _) => v.to_string(),
                    (None, Some(true)) => "(set)".into(),
                    (None, _) => "(not set)".into(),
                };
                table.row([out::text(key), out::text(label), out::text(&shown)]);
            }
            table.print()?;
            Ok(())
        }
        SettingsCommand::Set {
            pairs,
            secret_stdin,
        } => {
            let mut given = Vec::new();
            for pair in pairs {
                let (key, value) = pair.split_once('=').with_context(|| {
                    format!("{pair:?} is not KEY=VALUE; e.g. `pbx-host crm settings set region=eu`")
                })?;
                given.push(Given::Value(key.trim().to_string(), value.to_string()));
            }
            if let Some(key) = secret_stdin {
                given.push(Given::Stdin(key));
            }
            save(client, plugin, given).await
        }
    }
}

/// `crm configure --KEY VALUE … --KEY-stdin`: flags named after the
/// plugin's settings.
pub async fn configure(
    client: &AdminClient,
    plugin: &str,
    args: Vec<String>,
) -> anyhow::Result<()> {
    save(client, plugin, setting_flags(args)?).await
}

/// `--KEY VALUE`, `--KEY=VALUE` and `--KEY-stdin`, in order.
fn setting_flags(args: Vec<String>) -> anyhow::Result<Vec<Given>> {
    let mut given = Vec::new();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let Some(flag) = arg.strip_prefix("--") else {
            bail!(
                "{arg:?} is not a setting flag; give --KEY VALUE for each setting (`pbx-host crm describe` lists them)"
            );
        };
        if let Some(key) = flag.strip_suffix("-stdin") {
            given.push(Given::Stdin(key.to_string()));
        } else if let Some((key, value)) = flag.split_once('=') {
            given.push(Given::Value(key.to_string(), value.to_string()));
        } else {
            let value = args
                .next()
                .with_context(|| format!("--{flag} needs a value: --{flag} VALUE"))?;
            given.push(Given::Value(flag.to_string(), value));
        }
    }
    if given.is_empty() {
        bail!("give the settings to save as --KEY VALUE (`pbx-host crm describe` lists them)");
    }
    Ok(given)
}

/// A setting as the command line gave it.
#[derive(Debug, PartialEq)]
enum Given {
    /// `KEY=VALUE` or `--KEY VALUE`.
    Value(String, String),
    /// Read from standard input.
    Stdin(String),
}

/// Read any value from standard input, refuse a secret typed on the
/// command line, and save them in one request. Which keys exist is the
/// plugin's to say: it refuses an unknown one with its list, and it may
/// take input-only aliases (the Salesforce plugin's `login-url`).
async fn save(client: &AdminClient, plugin: &str, given: Vec<Given>) -> anyhow::Result<()> {
    let fields = fields(client, plugin).await?;
    if given
        .iter()
        .filter(|g| matches!(g, Given::Stdin(_)))
        .count()
        > 1
    {
        bail!("standard input holds one value: read one setting from it per command");
    }
    let mut settings = Vec::new();
    for g in given {
        let (key, value) = match g {
            Given::Value(key, value) => {
                if let Some(secret) = fields.iter().find(|f| f.key == key && f.secret) {
                    bail!(
                        "{} is a secret: pipe it in rather than typing it where the shell history and the process list keep it, e.g. `printf %s \"$SECRET\" | pbx-host crm settings set --secret-stdin {key}`",
                        secret.label
                    );
                }
                (key, value)
            }
            Given::Stdin(key) => {
                let label = fields
                    .iter()
                    .find(|f| f.key == key)
                    .map_or(key.as_str(), |f| f.label.as_str());
                let value = read_stdin(label)?;
                (key, value)
            }
        };
        settings.push(json!({"key": key, "value": value}));
    }
    let saved = client
        .put(
            &format!("/crm/{plugin}/settings"),
            &json!({ "settings": settings }),
        )
        .await?;
    outln!(
        "Saved. Status: {}",
        out::field(&saved["status"]["message"], "?")
    );
    Ok(())
}

fn read_stdin(label: &str) -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .with_context(|| format!("cannot read the {label} from standard input"))?;
    let value = line.trim();
    if value.is_empty() {
        bail!(
            "standard input held no {label}; pipe it in, e.g. `printf %s \"$VALUE\" | pbx-host crm …`"
        );
    }
    Ok(value.to_string())
}

/// `crm describe`: the CRM's name and the settings its plugin takes.
pub async fn describe(client: &AdminClient, plugin: &str, as_json: bool) -> anyhow::Result<()> {
    let info = client.get(&format!("/crm/{plugin}/describe")).await?;
    if as_json {
        print_json(&info)?;
        return Ok(());
    }
    outln!("{}", out::field(&info["crm_name"], plugin));
    for f in info["settings"].as_array().into_iter().flatten() {
        let key = out::field(&f["key"], "?");
        let flag = if f["kind"].as_str() == Some("Secret") {
            format!("--{key}-stdin")
        } else {
            format!("--{key} VALUE")
        };
        outln!(
            "  {flag:<28} {}{}",
            out::field(&f["label"], &key),
            if f["required"].as_bool() == Some(true) {
                " (required)"
            } else {
                ""
            }
        );
        if let Some(help) = f["help"].as_str().filter(|h| !h.is_empty()) {
            outln!("  {:<28} {}", "", out::text(help));
        }
        let choices: Vec<_> = f["choices"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["value"].as_str())
            .map(out::text)
            .collect();
        if !choices.is_empty() {
            outln!("  {:<28} one of: {}", "", choices.join(", "));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn configure_flags_are_settings_by_key() {
        let given = setting_flags(args(&[
            "--consumer-key",
            "3MVG9",
            "--consumer-secret-stdin",
            "--login-url=https://acme.my.salesforce.com",
        ]));
        assert_eq!(
            given.ok(),
            Some(vec![
                Given::Value("consumer-key".into(), "3MVG9".into()),
                Given::Stdin("consumer-secret".into()),
                Given::Value("login-url".into(), "https://acme.my.salesforce.com".into()),
            ])
        );
    }

    #[test]
    fn bad_configure_flags_name_the_fix() {
        let message = |list: &[&str]| {
            setting_flags(args(list))
                .map_err(|e| e.to_string())
                .err()
                .unwrap_or_default()
        };
        assert!(message(&["--account"]).contains("--account VALUE"));
        assert!(message(&["account=acme"]).contains("--KEY VALUE"));
        assert!(message(&[]).contains("crm describe"));
    }
}
