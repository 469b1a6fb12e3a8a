//! `pbx-host`, the command line: `serve` runs the host; every other command
//! is a thin client of the running host's admin API (`client`), which it
//! finds through the data directory. One file per command group.

mod agent;
mod call;
pub mod client;
mod crm;
mod crm_settings;
mod crm_users;
mod extension;
mod network;
mod operator;
mod out;
mod pinned_tls;
mod plugin;
mod serve;
mod tenant;
mod vendor;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use serde_json::Value;

use out::outln;

pub use client::AdminClient;

#[derive(Parser)]
#[command(
    name = "pbx-host",
    version,
    about = "The reference PBX host for CRM plugins"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the host: portal, admin API, OAuth callback and plugins.
    Serve(Box<serve::ServeArgs>),
    /// Install and list plugins.
    Plugin {
        #[command(flatten)]
        at: DataDir,
        /// Do it in each of these tenants, comma-separated (`default` is
        /// the host's own PBX), or `all` of them: a new version for chosen
        /// tenants first, then for all.
        #[arg(long, global = true, conflicts_with = "tenant")]
        tenants: Option<String>,
        #[command(subcommand)]
        command: plugin::PluginCommand,
    },
    /// The operator's tenants: the PBXs this host serves besides its own.
    Tenant {
        #[command(flatten)]
        at: DataDir,
        #[command(subcommand)]
        command: tenant::TenantCommand,
    },
    /// The operator's own token.
    Operator {
        #[command(flatten)]
        at: DataDir,
        #[command(subcommand)]
        command: operator::OperatorCommand,
    },
    /// Manage the PBX's extensions.
    Extension {
        #[command(flatten)]
        at: DataDir,
        #[command(subcommand)]
        command: extension::ExtensionCommand,
    },
    /// The PBX's Homepage URL, from which the Callback URLs are composed.
    Network {
        #[command(flatten)]
        at: DataDir,
        #[command(subcommand)]
        command: network::NetworkCommand,
    },
    /// The CRM integration.
    Crm {
        #[command(flatten)]
        at: DataDir,
        /// The CRM plugin's id (default: the only CRM plugin installed).
        #[arg(long, global = true)]
        plugin: Option<String>,
        #[command(subcommand)]
        command: crm::CrmCommand,
    },
    /// Calls: simulate one, look a caller up, click-to-call.
    Call {
        #[command(flatten)]
        at: DataDir,
        #[command(subcommand)]
        command: call::CallCommand,
    },
    /// Signed-in agents (and portal sessions): list them, sign them out.
    Agent {
        #[command(flatten)]
        at: DataDir,
        #[command(subcommand)]
        command: agent::AgentCommand,
    },
    /// Sign plugin files as a vendor (offline; no host needed).
    Vendor {
        #[command(subcommand)]
        command: vendor::VendorCommand,
    },
    /// The running host: version, limits and runtime counters.
    Status {
        #[command(flatten)]
        at: DataDir,
        /// Print JSON (the admin API's `GET /api/host`).
        #[arg(long)]
        json: bool,
    },
}

/// `status` for a person: what runs where, its limits and its counters.
fn host_prose(host: &Value) -> Vec<String> {
    let n = |v: &Value| v.as_u64().unwrap_or(0);
    let apis: Vec<String> = host["supported_apis"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a.as_str())
        .map(|a| out::text(a).into_owned())
        .collect();
    let runtime = &host["runtime"];
    vec![
        format!(
            "pbx-host {} is serving {}.",
            out::field(&host["version"], "?"),
            out::field(&host["public_url"], "?")
        ),
        format!("It runs plugins built against {}.", apis.join(", ")),
        format!(
            "Each plugin call may take {} ms and {} MiB of memory.",
            n(&host["limits"]["deadline_ms"]),
            n(&host["limits"]["memory_bytes"]) >> 20
        ),
        format!(
            "Since it started: {} plugin calls ({} failed), {} components compiled, {} loaded from the cache, {} instances created.",
            n(&runtime["calls"]),
            n(&runtime["failed_calls"]),
            n(&runtime["compiled"]),
            n(&runtime["cache_loads"]),
            n(&runtime["instantiations"])
        ),
    ]
}

#[derive(Args)]
struct DataDir {
    /// The running host's data directory.
    #[arg(long, env = "PBX_DATA_DIR", global = true)]
    data_dir: Option<PathBuf>,
    /// Act in this tenant's PBX, as the host's operator (default: the
    /// host's own PBX).
    #[arg(long, env = "PBX_TENANT", global = true)]
    tenant: Option<String>,
}

impl DataDir {
    fn dir(&self) -> anyhow::Result<&PathBuf> {
        self.data_dir
            .as_ref()
            .context("--data-dir is required (the directory `pbx-host serve` uses)")
    }

    /// The admin API of the PBX the command is for.
    fn client(&self) -> anyhow::Result<AdminClient> {
        match &self.tenant {
            Some(name) => AdminClient::for_tenant(self.dir()?, name),
            None => AdminClient::from_data_dir(self.dir()?),
        }
    }

    /// The operator API.
    fn operator(&self) -> anyhow::Result<AdminClient> {
        AdminClient::operator(self.dir()?)
    }

    /// The tenants `list` names (`all`: the host's own PBX and every tenant).
    async fn tenants(&self, list: &str) -> anyhow::Result<Vec<String>> {
        if list.trim() != "all" {
            let names: Vec<String> = list
                .split(',')
                .map(|n| n.trim().to_string())
                .filter(|n| !n.is_empty())
                .collect();
            anyhow::ensure!(
                !names.is_empty(),
                "--tenants names no tenant; give NAME,NAME or all"
            );
            return Ok(names);
        }
        let listed = self.operator()?.get("/tenants").await?;
        let mut names = vec![crate::tenants::DEFAULT_TENANT.to_string()];
        names.extend(
            listed["tenants"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|t| t["name"].as_str().map(str::to_string)),
        );
        Ok(names)
    }
}

/// Parse the command line and run it; the process's exit code.
pub async fn main() -> std::process::ExitCode {
    match run(Cli::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // The message may quote the CRM or a plugin.
            out::error_line(format_args!("error: {}", out::lines(&format!("{e:#}"))));
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve::serve(*args).await,
        Command::Plugin {
            at,
            tenants: Some(list),
            command,
        } => {
            // Each tenant in turn; one that refuses stops the rest, so the
            // operator sees where it stopped.
            for name in at.tenants(&list).await? {
                outln!("{name}:");
                let client = AdminClient::for_tenant(at.dir()?, &name)?;
                plugin::run(client, command.clone())
                    .await
                    .with_context(|| format!("in tenant {name} (those before it are done)"))?;
            }
            Ok(())
        }
        Command::Plugin {
            at,
            tenants: None,
            command,
        } => plugin::run(at.client()?, command).await,
        Command::Tenant { at, command } => {
            anyhow::ensure!(
                at.tenant.is_none(),
                "`tenant` commands are the operator's, for every tenant: drop --tenant"
            );
            tenant::run(at.operator()?, command).await
        }
        Command::Operator { at, command } => {
            anyhow::ensure!(
                at.tenant.is_none(),
                "`operator` commands are the operator's own, in no tenant: drop --tenant"
            );
            operator::run(at.operator()?, command).await
        }
        Command::Extension { at, command } => extension::run(at.client()?, command).await,
        Command::Network { at, command } => network::run(at.client()?, command).await,
        Command::Crm {
            mut at,
            mut plugin,
            mut command,
        } => {
            // `configure` takes every flag after it as a setting, so the
            // CLI's own options given after it are picked out here.
            if let crm::CrmCommand::Configure { settings } = &mut command {
                if let Some(dir) = take_option(settings, "--data-dir") {
                    at.data_dir = Some(PathBuf::from(dir));
                }
                if let Some(id) = take_option(settings, "--plugin") {
                    plugin = Some(id);
                }
                if let Some(name) = take_option(settings, "--tenant") {
                    at.tenant = Some(name);
                }
            }
            let client = at.client()?;
            let plugin = crm::plugin_id(&client, plugin).await?;
            crm::run(&client, &plugin, command).await
        }
        Command::Call { at, command } => call::run(&at.client()?, command).await,
        Command::Agent { at, command } => agent::run(at.client()?, command).await,
        Command::Vendor { command } => vendor::run(command),
        Command::Status { at, json } => {
            let host = at.client()?.get("/host").await?;
            if json {
                print_json(&host)
            } else {
                for line in host_prose(&host) {
                    outln!("{line}");
                }
                Ok(())
            }
        }
    }
}

/// Removes `NAME VALUE` or `NAME=VALUE` from `args`; the value.
fn take_option(args: &mut Vec<String>, name: &str) -> Option<String> {
    let at = args
        .iter()
        .position(|a| a == name || a.starts_with(&format!("{name}=")))?;
    let arg = args.remove(at);
    match arg.split_once('=') {
        Some((_, value)) => Some(value.to_string()),
        None if at < args.len() => Some(args.remove(at)),
        None => None,
    }
}

/// JSON for scripts (serde_json escapes control characters in strings).
fn print_json(value: &Value) -> anyhow::Result<()> {
    outln!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_status_reads_as_prose() {
        let host = serde_json::json!({
            "version": "0.1.0",
            "public_url": "https://pbx.example.com",
            "supported_apis": ["pbx:crm@0.1.0", "pbx:crm@0.3.0"],
            "limits": {"deadline_ms": 5000, "memory_bytes": 67108864},
            "runtime": {"calls": 12, "failed_calls": 1, "compiled": 1, "cache_loads": 0, "instantiations": 3},
        });
        assert_eq!(
            host_prose(&host),
            vec![
                "pbx-host 0.1.0 is serving https://pbx.example.com.",
                "It runs plugins built against pbx:crm@0.1.0, pbx:crm@0.3.0.",
                "Each plugin call may take 5000 ms and 64 MiB of memory.",
                "Since it started: 12 plugin calls (1 failed), 1 components compiled, 0 loaded from the cache, 3 instances created.",
            ]
        );
    }

    #[test]
    fn the_clis_own_options_are_taken_out_of_setting_flags() {
        let mut args: Vec<String> = ["--account", "acme", "--data-dir", "/d", "--plugin=probe"]
            .iter()
            .map(|a| a.to_string())
            .collect();
        assert_eq!(take_option(&mut args, "--data-dir").as_deref(), Some("/d"));
        assert_eq!(take_option(&mut args, "--plugin").as_deref(), Some("probe"));
        assert_eq!(take_option(&mut args, "--plugin"), None);
        assert_eq!(args, ["--account", "acme"]);
    }
}
