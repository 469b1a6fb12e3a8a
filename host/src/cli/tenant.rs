//! `pbx-host tenant …`: the operator's commands for the PBXs one host
//! serves besides its own, through the operator API (the operator token
//! in the data directory).

use anyhow::Context;
use clap::Subcommand;
use serde_json::{Value, json};

use super::client::AdminClient;
use super::out::{self, outln};
use super::print_json;

#[derive(Subcommand)]
pub enum TenantCommand {
    /// Add a PBX: its name and the public URL its users and the CRM reach
    /// it at (requests are routed by that URL's host). Prints its
    /// administrator's token once.
    Add {
        /// 1 to 32 lowercase letters, digits and dashes.
        name: String,
        /// Its Homepage URL, e.g. https://pbx.acme.example.
        #[arg(long)]
        public_url: String,
        /// Keys each of its plugins may keep (with --kv-mib; default: the host's).
        #[arg(long, requires = "kv_mib")]
        kv_keys: Option<u64>,
        /// MiB each of its plugins may keep (with --kv-keys).
        #[arg(long, requires = "kv_keys")]
        kv_mib: Option<u64>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// The tenants, with their plugins, status and usage.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Stop serving a tenant (its pages, API, callback and calls answer
    /// 503); everything it keeps stays.
    Suspend {
        /// The tenant.
        name: String,
    },
    /// Serve a suspended tenant again.
    Resume {
        /// The tenant.
        name: String,
    },
    /// Move a tenant to another public URL (its host name changed); its
    /// old one reaches it no more. Prints its new Callback URLs, which
    /// each CRM app must be given.
    SetUrl {
        /// The tenant.
        name: String,
        /// Its new Homepage URL, e.g. https://pbx.acme-corp.example.
        #[arg(long)]
        public_url: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Serve a tenant's own certificate for its host name (HTTPS hosts,
    /// chosen by SNI), instead of the host's, on every replica.
    SetCertificate {
        /// The tenant.
        name: String,
        /// Its certificate chain (PEM), the server's certificate first.
        #[arg(long)]
        cert: std::path::PathBuf,
        /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1).
        #[arg(long)]
        key: std::path::PathBuf,
    },
    /// Serve the host's certificate for a tenant again.
    RemoveCertificate {
        /// The tenant.
        name: String,
    },
    /// Issue a tenant's administrator a new admin token (theirs was lost or
    /// leaked). Prints it once; the old one stops working and their portal
    /// sessions end. `default` is the host's own PBX (its
    /// DATA_DIR/admin-token gets the new one).
    NewToken {
        /// The tenant, or `default`.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a tenant's CRM tokens, then delete everything it keeps.
    Remove {
        /// The tenant.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(client: AdminClient, command: TenantCommand) -> anyhow::Result<()> {
    match command {
        TenantCommand::Add {
            name,
            public_url,
            kv_keys,
            kv_mib,
            json,
        } => {
            let kv = match (kv_keys, kv_mib) {
                (Some(keys), Some(mib)) => json!({"max_keys": keys, "max_mib": mib}),
                _ => Value::Null,
            };
            let added = client
                .post(
                    "/tenants",
                    &json!({"name": name, "public_url": public_url, "kv": kv}),
                )
                .await?;
            if json {
                return print_json(&added);
            }
            let tenant = &added["tenant"];
            // The token first: it is shown this once, and a reader that
            // takes one line (`| head -1`) must not lose it.
            outln!(
                "{}'s administrator token (shown once; they log in to its portal with it): {}",
                out::field(&tenant["name"], "?"),
                out::field(&added["admin_token"], "?")
            );
            outln!(
                "added tenant {} at {}",
                out::field(&tenant["name"], "?"),
                out::field(&tenant["public_url"], "?")
            );
            outln!(
                "act in it with `pbx-host --tenant {name} …`, e.g. `pbx-host plugin install FILE --tenant {name}`"
            );
        }
        TenantCommand::List { json } => {
            let list = client.get("/tenants").await?;
            if json {
                return print_json(&list);
            }
            print_tenants(&list)?;
        }
        TenantCommand::Suspend { name } => {
            client
                .post(&format!("/tenants/{name}/suspend"), &json!({}))
                .await?;
            outln!(
                "{name} is suspended: nothing of it is served until `pbx-host tenant resume {name}`"
            );
        }
        TenantCommand::Resume { name } => {
            client
                .post(&format!("/tenants/{name}/resume"), &json!({}))
                .await?;
            outln!("{name} is served again");
        }
        TenantCommand::SetUrl {
            name,
            public_url,
            json,
        } => {
            let moved = client
                .put(
                    &format!("/tenants/{name}/public-url"),
                    &json!({"public_url": public_url}),
                )
                .await?;
            if json {
                return print_json(&moved);
            }
            outln!(
                "{name} is now at {}; its old URL reaches it no more",
                out::field(&moved["tenant"]["public_url"], "?")
            );
            for callback in moved["callback_urls"].as_array().into_iter().flatten() {
                outln!(
                    "give {}'s app its new Callback URL: {}",
                    out::field(&callback["plugin"], "?"),
                    out::field(&callback["callback_url"], "?")
                );
            }
        }
        TenantCommand::SetCertificate { name, cert, key } => {
            let chain_pem = std::fs::read_to_string(&cert)
                .with_context(|| format!("cannot read --cert {}", cert.display()))?;
            // Not in any message: the key's bytes.
            let key_pem = std::fs::read_to_string(&key)
                .with_context(|| format!("cannot read --key {}", key.display()))?;
            let set = client
                .put(
                    &format!("/tenants/{name}/certificate"),
                    &json!({"chain_pem": chain_pem, "key_pem": key_pem}),
                )
                .await?;
            outln!(
                "{name}'s own certificate is served for {}",
                out::field(&set["host"], "?")
            );
        }
        TenantCommand::RemoveCertificate { name } => {
            let removed = client
                .delete(&format!("/tenants/{name}/certificate"))
                .await?;
            outln!(
                "{}; the host's certificate is served for {name}",
                if removed["removed"] == true {
                    "its own certificate is removed"
                } else {
                    "it had no certificate of its own"
                }
            );
        }
        TenantCommand::NewToken { name, json } => {
            let issued = client
                .post(&format!("/tenants/{name}/admin-token"), &json!({}))
                .await?;
            if json {
                return print_json(&issued);
            }
            // The token first, as `tenant add` prints it.
            outln!(
                "{name}'s new administrator token (shown once; the old one no longer works): {}",
                out::field(&issued["admin_token"], "?")
            );
            let ended = issued["sessions_ended"].as_u64().unwrap_or(0);
            outln!(
                "{ended} administrator portal session{} ended; agents stay signed in",
                if ended == 1 { "" } else { "s" }
            );
        }
        TenantCommand::Remove { name, json } => {
            let removed = client.delete(&format!("/tenants/{name}")).await?;
            if json {
                return print_json(&removed);
            }
            for line in removal_prose(&removed["removed"]) {
                outln!("{line}");
            }
        }
    }
    Ok(())
}

fn print_tenants(list: &Value) -> anyhow::Result<()> {
    let tenants = list["tenants"].as_array().cloned().unwrap_or_default();
    if tenants.is_empty() {
        outln!("no tenants; add one with `pbx-host tenant add NAME --public-url URL`");
        return Ok(());
    }
    let mut table = out::Table::new(&[
        "TENANT",
        "PUBLIC URL",
        "STATUS",
        "PLUGINS",
        "KEYS",
        "BYTES",
        "CERTIFICATE",
    ]);
    for t in &tenants {
        let plugins: Vec<String> = t["plugins"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| {
                format!(
                    "{} {}",
                    out::field(&p["id"], "?"),
                    out::field(&p["version"], "?")
                )
            })
            .collect();
        table.row([
            out::field(&t["name"], "?").into_owned(),
            out::field(&t["public_url"], "?").into_owned(),
            out::field(&t["status"], "?").into_owned(),
            if plugins.is_empty() {
                "-".to_string()
            } else {
                plugins.join(", ")
            },
            t["usage"]["keys"].as_u64().unwrap_or(0).to_string(),
            t["usage"]["bytes"].as_u64().unwrap_or(0).to_string(),
            if t["own_certificate"] == true {
                "its own"
            } else {
                "the host's"
            }
            .to_string(),
        ]);
    }
    table.print()?;
    Ok(())
}

/// What `tenant remove` did, for a person.
fn removal_prose(removed: &Value) -> Vec<String> {
    let mut lines = vec![format!(
        "removed tenant {} ({})",
        out::field(&removed["name"], "?"),
        out::field(&removed["public_url"], "?")
    )];
    for r in removed["revoked"].as_array().into_iter().flatten() {
        let verb = if r["ok"] == true {
            "revoked"
        } else {
            "NOT revoked"
        };
        lines.push(format!(
            "  {verb} the CRM tokens of {}: {}",
            out::field(&r["plugin"], "?"),
            out::field(&r["message"], "")
        ));
    }
    let namespaces = removed["namespaces"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let keys: u64 = namespaces.iter().filter_map(|n| n["keys"].as_u64()).sum();
    lines.push(format!(
        "  deleted {keys} keys in {} namespaces:",
        namespaces.len()
    ));
    for n in &namespaces {
        lines.push(format!(
            "    {} ({} keys, {} bytes)",
            out::field(&n["name"], "?"),
            n["keys"].as_u64().unwrap_or(0),
            n["bytes"].as_u64().unwrap_or(0)
        ));
    }
    let files = removed["files"].as_array().map_or(0, Vec::len);
    if files > 0 {
        lines.push(format!("  deleted {files} plugin files no other PBX uses"));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_removal_says_what_it_removed() {
        let removed = json!({
            "name": "acme",
            "public_url": "https://pbx.acme.example/",
            "revoked": [{"plugin": "salesforce", "ok": true, "message": "disconnected"}],
            "namespaces": [
                {"name": "host/extensions", "keys": 2, "bytes": 40},
                {"name": "plugin/salesforce", "keys": 5, "bytes": 900},
            ],
            "files": [],
        });
        assert_eq!(
            removal_prose(&removed),
            vec![
                "removed tenant acme (https://pbx.acme.example/)",
                "  revoked the CRM tokens of salesforce: disconnected",
                "  deleted 7 keys in 2 namespaces:",
                "    host/extensions (2 keys, 40 bytes)",
                "    plugin/salesforce (5 keys, 900 bytes)",
            ]
        );
    }
}
