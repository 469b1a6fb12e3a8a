//! `pbx-host plugin …`: install, list, activate, roll back, grant and
//! remove plugin versions, through the running host's admin API.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use serde_json::{Value, json};

use super::client::AdminClient;
use super::out::{self, outln};
use super::print_json;

#[derive(Subcommand, Clone)]
pub enum PluginCommand {
    /// Verify, store and compile a plugin file; it becomes active if it is
    /// the plugin's first version or with --activate, never with
    /// --no-activate. Prints the hosts the version requests.
    Install {
        /// The component (.wasm).
        file: PathBuf,
        /// Make it the active version (calls switch to it at once).
        #[arg(long, conflicts_with = "no_activate")]
        activate: bool,
        /// Keep it inactive, even as the plugin's first version (review
        /// what it requests, then `plugin activate`).
        #[arg(long)]
        no_activate: bool,
        /// The SHA-256 (hex) the vendor published for the file.
        #[arg(long)]
        sha256: Option<String>,
        /// Accept a file signed by another vendor key than the one that
        /// signed the plugin's first version, and pin the plugin to it
        /// (only when the vendor really changed its key).
        #[arg(long)]
        repin: bool,
        /// With --activate: allow a version older than the newest one
        /// activated.
        #[arg(long)]
        allow_downgrade: bool,
    },
    /// The installed plugins, their versions and grants.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Make an installed version the active one (calls keep flowing).
    Activate {
        /// The plugin id, e.g. salesforce.
        id: String,
        /// The version, as `plugin list` shows it.
        version: String,
        /// Allow a version older than the newest one activated.
        #[arg(long)]
        allow_downgrade: bool,
    },
    /// Go back to the version active before the last activation.
    Rollback {
        /// The plugin id.
        id: String,
    },
    /// Remove an installed version that is not active.
    Remove {
        /// The plugin id.
        id: String,
        /// The version.
        version: String,
    },
    /// Let a plugin reach a host its manifest requests, or give it more
    /// kv-store space.
    Grant {
        /// The plugin id.
        id: String,
        /// scheme://host[:port], e.g. https://*.my.salesforce.com
        #[arg(required_unless_present = "kv_keys")]
        url_pattern: Option<String>,
        /// kv-store quota: keys (with --kv-mib).
        #[arg(long, requires = "kv_mib")]
        kv_keys: Option<u64>,
        /// kv-store quota: MiB (with --kv-keys).
        #[arg(long, requires = "kv_keys")]
        kv_mib: Option<u64>,
    },
}

pub async fn run(client: AdminClient, command: PluginCommand) -> anyhow::Result<()> {
    match command {
        PluginCommand::Install {
            file,
            activate,
            no_activate,
            sha256,
            repin,
            allow_downgrade,
        } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let mut path = format!(
                "/plugins?activate={}",
                match (activate, no_activate) {
                    (true, _) => "yes",
                    (_, true) => "no",
                    _ => "if-none-active",
                }
            );
            if let Some(sha256) = sha256 {
                path.push_str(&format!("&sha256={}", sha256.trim()));
            }
            if repin {
                path.push_str("&repin=yes");
            }
            if allow_downgrade {
                path.push_str("&allow_downgrade=yes");
            }
            let installed = client.post_bytes(&path, bytes).await?;
            // The manifest is the plugin's own text.
            let id = out::field(&installed["manifest"]["id"], "?");
            let version = out::field(&installed["manifest"]["version"], "?");
            outln!(
                "installed {id} {version} (api {}, sha256 {}{})",
                installed["api_version"].as_str().unwrap_or("?"),
                installed["sha256"].as_str().unwrap_or("?"),
                installed["signed_by"]
                    .as_str()
                    .map(|k| format!(", signed by {k}"))
                    .unwrap_or_default(),
            );
            let requested = texts(&installed["requested"]);
            if requested.is_empty() {
                outln!("it requests no hosts");
            } else {
                outln!("it requests: {}", requested.join(", "));
            }
            let waiting: Vec<_> = installed["waiting_for_grants"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(out::text)
                .collect();
            if installed["activated"] == true {
                outln!("{id} {version} is active");
            } else if !waiting.is_empty() {
                outln!(
                    "not activated: it requests {}, which is not granted; run `pbx-host plugin grant {id} PATTERN`, then `pbx-host plugin activate {id} {version}`",
                    waiting.join(", ")
                );
            } else {
                outln!("not activated; activate it with `pbx-host plugin activate {id} {version}`");
            }
        }
        PluginCommand::List { json } => {
            let list = client.get("/plugins").await?;
            if json {
                print_json(&list)?;
            } else {
                print_plugins(&list)?;
            }
        }
        PluginCommand::Activate {
            id,
            version,
            allow_downgrade,
        } => {
            let done = client
                .post(
                    &format!("/plugins/{id}/activate"),
                    &json!({ "version": version, "allow_downgrade": allow_downgrade }),
                )
                .await?;
            print_activation(&done)?;
        }
        PluginCommand::Rollback { id } => {
            let done = client
                .post(&format!("/plugins/{id}/rollback"), &json!({}))
                .await?;
            print_activation(&done)?;
        }
        PluginCommand::Remove { id, version } => {
            client
                .delete(&format!("/plugins/{id}/versions/{version}"))
                .await?;
            outln!("removed {id} {version}");
        }
        PluginCommand::Grant {
            id,
            url_pattern,
            kv_keys,
            kv_mib,
        } => {
            let granted = client
                .post(
                    &format!("/plugins/{id}/grants"),
                    &json!({ "pattern": url_pattern, "kv_max_keys": kv_keys, "kv_max_mib": kv_mib }),
                )
                .await?;
            let list: Vec<&str> = granted["granted"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            if !list.is_empty() {
                outln!("{id} may reach: {}", list.join(", "));
            }
            if let (Some(keys), Some(bytes)) = (
                granted["kv_max_keys"].as_u64(),
                granted["kv_max_bytes"].as_u64(),
            ) {
                outln!("{id} may keep {keys} keys, {} MiB", bytes >> 20);
            }
        }
    }
    Ok(())
}

/// The strings of a JSON array, made safe for the terminal.
fn texts(value: &Value) -> Vec<String> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|s| out::text(s).into_owned())
        .collect()
}

fn print_activation(done: &Value) -> anyhow::Result<()> {
    outln!(
        "{} {} is active{} (switched in {:.1} ms{})",
        out::field(&done["id"], "?"),
        out::field(&done["active"], "?"),
        done["previous"]
            .as_str()
            .map(|p| format!("; rollback returns to {}", out::text(p)))
            .unwrap_or_default(),
        done["swap_us"].as_u64().unwrap_or(0) as f64 / 1000.0,
        if done["migrated"] == true {
            ", state migrated"
        } else {
            ""
        },
    );
    Ok(())
}

fn print_plugins(list: &Value) -> anyhow::Result<()> {
    let mut table = out::Table::new(&[
        "ID",
        "VERSION",
        "ACTIVE",
        "API",
        "REQUESTED HOSTS",
        "GRANTED HOSTS",
        "SHA-256",
    ]);
    // Versions waiting for grants, said under the table.
    let mut waiting_lines = Vec::new();
    for p in list["plugins"].as_array().into_iter().flatten() {
        let join = |v: &Value| {
            let items: Vec<_> = v
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(out::text)
                .collect();
            if items.is_empty() {
                "-".to_string()
            } else {
                items.join(",")
            }
        };
        let granted = join(&p["granted"]);
        for v in p["versions"].as_array().into_iter().flatten() {
            let waiting = join(&v["waiting_for_grants"]);
            table.row([
                out::field(&p["id"], "?").into_owned(),
                out::field(&v["version"], "?").into_owned(),
                (if v["active"] == true { "yes" } else { "no" }).to_string(),
                out::field(&v["api_version"], "?").into_owned(),
                join(&v["requested"]),
                granted.clone(),
                out::field(&v["sha256"], "?").into_owned(),
            ]);
            if waiting != "-" {
                waiting_lines.push(format!(
                    "{} {} is waiting for grants: {waiting}",
                    out::field(&p["id"], "?"),
                    out::field(&v["version"], "?")
                ));
            }
        }
    }
    table.print()?;
    for line in waiting_lines {
        outln!("{line}");
    }
    Ok(())
}
