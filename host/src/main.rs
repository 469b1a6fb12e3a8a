//! `pbx-host`: the reference PBX host. `serve` runs it; every other command is
//! a thin client of the running host's admin API.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use serde_json::{Value, json};

use pbx_host::client::AdminClient;

mod calls;
mod users;
mod vendor;
use pbx_host::config::{FileConfig, HostConfig};

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
    Serve(ServeArgs),
    /// Install and list plugins.
    Plugin {
        #[command(flatten)]
        at: DataDir,
        #[command(subcommand)]
        command: PluginCommand,
    },
    /// Manage the PBX's extensions.
    Extension {
        #[command(flatten)]
        at: DataDir,
        #[command(subcommand)]
        command: ExtensionCommand,
    },
    /// The CRM integration.
    Crm {
        #[command(flatten)]
        at: DataDir,
        /// The CRM plugin's id.
        #[arg(long, global = true, default_value = "salesforce")]
        plugin: String,
        #[command(subcommand)]
        command: CrmCommand,
    },
    /// Calls: simulate one, look a caller up, click-to-call.
    Call {
        #[command(flatten)]
        at: DataDir,
        #[command(subcommand)]
        command: calls::CallCommand,
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
    },
}

#[derive(Args)]
struct DataDir {
    /// The running host's data directory.
    #[arg(long, env = "PBX_DATA_DIR", global = true)]
    data_dir: Option<PathBuf>,
}

impl DataDir {
    fn client(&self) -> anyhow::Result<AdminClient> {
        let dir = self
            .data_dir
            .as_ref()
            .context("--data-dir is required (the directory `pbx-host serve` uses)")?;
        AdminClient::from_data_dir(dir)
    }
}

#[derive(Args)]
struct ServeArgs {
    /// A TOML file with the same settings (flags win).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Data directory: store, plugins, cache, keys.
    #[arg(long, env = "PBX_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Listen address of the portal, admin API and callback.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// The PBX's public URL (its FQDN); the Callback URL is built from it.
    #[arg(long)]
    public_url: Option<String>,
    /// Extra CA certificate (PEM) trusted for outbound HTTPS; repeatable.
    #[arg(long = "trust-ca")]
    trust_ca: Vec<PathBuf>,
    /// Let a plugin reach hosts: PLUGIN_ID=scheme://host[:port]; repeatable.
    #[arg(long = "grant")]
    grant: Vec<String>,
    /// Trust a vendor's plugin signatures: KEY_ID=BASE64 Ed25519 public key; repeatable.
    #[arg(long = "trusted-key")]
    trusted_key: Vec<String>,
    /// Refuse plugin files without a trusted vendor signature.
    #[arg(long)]
    require_signature: bool,
    /// Per-call deadline in milliseconds (default 10000).
    #[arg(long)]
    deadline_ms: Option<u64>,
    /// Memory cap per plugin instance in MiB (default 64).
    #[arg(long)]
    memory_mib: Option<usize>,
    /// Largest outbound HTTP response in MiB (default 16).
    #[arg(long)]
    max_response_mib: Option<u64>,
    /// Longest outbound HTTP exchange in milliseconds (default 30000).
    #[arg(long)]
    http_timeout_ms: Option<u64>,
    /// Also open administrator pages with xdg-open.
    #[arg(long)]
    system_browser: bool,
    /// Default region for phone numbers, e.g. US.
    #[arg(long)]
    default_region: Option<String>,
    /// How often pending call logs are delivered, in milliseconds (default 5000).
    #[arg(long)]
    journal_interval_ms: Option<u64>,
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Verify, store and compile a plugin file; it becomes active if it is
    /// the plugin's first version or with --activate.
    Install {
        /// The component (.wasm).
        file: PathBuf,
        /// Make it the active version (calls switch to it at once).
        #[arg(long)]
        activate: bool,
        /// The SHA-256 (hex) the vendor published for the file.
        #[arg(long)]
        sha256: Option<String>,
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

#[derive(Subcommand)]
enum ExtensionCommand {
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

#[derive(Subcommand)]
enum CrmCommand {
    /// The integration's status.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// The Callback URL to enter in the CRM's app.
    CallbackUrl,
    /// Save the connected app's Consumer Key and Secret (and login host).
    Configure {
        /// The Consumer Key.
        #[arg(long)]
        consumer_key: String,
        /// Read the Consumer Secret from standard input (so it is not in the
        /// shell history or the process list).
        #[arg(long)]
        consumer_secret_stdin: bool,
        /// Login URL: https://login.salesforce.com, https://test.salesforce.com,
        /// or your My Domain URL.
        #[arg(long)]
        login_url: Option<String>,
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

#[derive(Subcommand)]
enum UsersCommand {
    /// Read the CRM's active users again, with progress.
    Sync,
    /// The users with their extensions and association state.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run(Cli::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve(args).await,
        Command::Plugin { at, command } => plugin(at.client()?, command).await,
        Command::Extension { at, command } => extension(at.client()?, command).await,
        Command::Crm {
            at,
            plugin,
            command,
        } => crm(at.client()?, &plugin, command).await,
        Command::Call { at, command } => calls::run(&at.client()?, command).await,
        Command::Vendor { command } => vendor::run(command),
        Command::Status { at } => {
            print_json(&at.client()?.get("/host").await?);
            Ok(())
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let mut file = match &args.config {
        Some(path) => FileConfig::read(path)?,
        None => FileConfig::default(),
    };
    // Flags win over the file.
    file.data_dir = args.data_dir.or(file.data_dir);
    file.listen = args.listen.or(file.listen);
    file.public_url = args.public_url.or(file.public_url);
    file.trust_ca.extend(args.trust_ca);
    file.grant.extend(args.grant);
    file.trusted_key.extend(args.trusted_key);
    if args.require_signature {
        file.require_signature = Some(true);
    }
    file.deadline_ms = args.deadline_ms.or(file.deadline_ms);
    file.memory_mib = args.memory_mib.or(file.memory_mib);
    file.max_response_mib = args.max_response_mib.or(file.max_response_mib);
    file.http_timeout_ms = args.http_timeout_ms.or(file.http_timeout_ms);
    file.default_region = args.default_region.or(file.default_region);
    file.journal_interval_ms = args.journal_interval_ms.or(file.journal_interval_ms);
    if args.system_browser {
        file.system_browser = Some(true);
    }
    let config = HostConfig::from_file(file)?;
    let host = pbx_host::server::start(config).await?;
    println!("portal: {}/", host.url());
    host.run_until(async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await;
    Ok(())
}

async fn plugin(client: AdminClient, command: PluginCommand) -> anyhow::Result<()> {
    match command {
        PluginCommand::Install {
            file,
            activate,
            sha256,
        } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let mut path = format!(
                "/plugins?activate={}",
                if activate { "yes" } else { "if-none-active" }
            );
            if let Some(sha256) = sha256 {
                path.push_str(&format!("&sha256={}", sha256.trim()));
            }
            let installed = client.post_bytes(&path, bytes).await?;
            let id = installed["manifest"]["id"].as_str().unwrap_or("?");
            let version = installed["manifest"]["version"].as_str().unwrap_or("?");
            println!(
                "installed {id} {version} (api {}, sha256 {}{})",
                installed["api_version"].as_str().unwrap_or("?"),
                installed["sha256"].as_str().unwrap_or("?"),
                installed["signed_by"]
                    .as_str()
                    .map(|k| format!(", signed by {k}"))
                    .unwrap_or_default(),
            );
            let waiting: Vec<&str> = installed["waiting_for_grants"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            if installed["activated"] == true {
                println!("{id} {version} is active");
            } else if !waiting.is_empty() {
                println!(
                    "not activated: it requests {}, which is not granted; run `pbx-host plugin grant {id} PATTERN`, then `pbx-host plugin activate {id} {version}`",
                    waiting.join(", ")
                );
            } else {
                println!(
                    "not activated; activate it with `pbx-host plugin activate {id} {version}`"
                );
            }
        }
        PluginCommand::List { json } => {
            let list = client.get("/plugins").await?;
            if json {
                print_json(&list);
            } else {
                print_plugins(&list);
            }
        }
        PluginCommand::Activate { id, version } => {
            let done = client
                .post(
                    &format!("/plugins/{id}/activate"),
                    &json!({ "version": version }),
                )
                .await?;
            print_activation(&done);
        }
        PluginCommand::Rollback { id } => {
            let done = client
                .post(&format!("/plugins/{id}/rollback"), &json!({}))
                .await?;
            print_activation(&done);
        }
        PluginCommand::Remove { id, version } => {
            client
                .delete(&format!("/plugins/{id}/versions/{version}"))
                .await?;
            println!("removed {id} {version}");
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
                println!("{id} may reach: {}", list.join(", "));
            }
            if let (Some(keys), Some(bytes)) = (
                granted["kv_max_keys"].as_u64(),
                granted["kv_max_bytes"].as_u64(),
            ) {
                println!("{id} may keep {keys} keys, {} MiB", bytes >> 20);
            }
        }
    }
    Ok(())
}

fn print_activation(done: &Value) {
    println!(
        "{} {} is active{} (switched in {:.1} ms{})",
        done["id"].as_str().unwrap_or("?"),
        done["active"].as_str().unwrap_or("?"),
        done["previous"]
            .as_str()
            .map(|p| format!("; rollback returns to {p}"))
            .unwrap_or_default(),
        done["swap_us"].as_u64().unwrap_or(0) as f64 / 1000.0,
        if done["migrated"] == true {
            ", state migrated"
        } else {
            ""
        },
    );
}

fn print_plugins(list: &Value) {
    println!(
        "{:<14} {:<10} {:<7} {:<6} {:<34} {:<34} SHA-256",
        "ID", "VERSION", "ACTIVE", "API", "REQUESTED HOSTS", "GRANTED HOSTS"
    );
    for p in list["plugins"].as_array().into_iter().flatten() {
        let join = |v: &Value| {
            let items: Vec<&str> = v
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
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
            println!(
                "{:<14} {:<10} {:<7} {:<6} {:<34} {:<34} {}",
                p["id"].as_str().unwrap_or("?"),
                v["version"].as_str().unwrap_or("?"),
                if v["active"] == true { "yes" } else { "" },
                v["api_version"].as_str().unwrap_or("?"),
                join(&v["requested"]),
                granted,
                v["sha256"].as_str().unwrap_or("?"),
            );
            if waiting != "-" {
                println!("{:<14} waiting for grants: {waiting}", "");
            }
        }
    }
}

async fn extension(client: AdminClient, command: ExtensionCommand) -> anyhow::Result<()> {
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
            println!(
                "extension {} saved",
                saved["number"].as_str().unwrap_or("?")
            );
        }
        ExtensionCommand::List { json } => {
            let list = client.get("/extensions").await?;
            if json {
                print_json(&list);
            } else {
                println!("{:<8} {:<30} E-MAIL", "NUMBER", "NAME");
                for e in list["extensions"].as_array().into_iter().flatten() {
                    println!(
                        "{:<8} {:<30} {}",
                        e["number"].as_str().unwrap_or("?"),
                        e["name"].as_str().unwrap_or("?"),
                        e["email"].as_str().unwrap_or("-"),
                    );
                }
            }
        }
        ExtensionCommand::Remove { number } => {
            client.delete(&format!("/extensions/{number}")).await?;
            println!("extension {number} removed");
        }
    }
    Ok(())
}

async fn crm(client: AdminClient, plugin: &str, command: CrmCommand) -> anyhow::Result<()> {
    match command {
        CrmCommand::Status { json } => {
            let status = client.get(&format!("/crm/{plugin}/status")).await?;
            if json {
                print_json(&status);
            } else {
                println!("Status: {}", status["message"].as_str().unwrap_or("?"));
                if let Some(account) = status["account"].as_str() {
                    println!("Account: {account}");
                }
                if let Some(problem) = status["problem"].as_str() {
                    println!("Problem: {problem}");
                }
                if let Some(n) = status["pending_call_logs"].as_u64() {
                    println!("Call logs waiting: {n}");
                }
                if let Some(n) = status["queued_call_events"].as_u64().filter(|n| *n > 0) {
                    println!("Call events kept by the host for another delivery: {n}");
                }
            }
        }
        CrmCommand::CallbackUrl => {
            let url = client.get(&format!("/crm/{plugin}/callback-url")).await?;
            println!("{}", url["callback_url"].as_str().unwrap_or("?"));
        }
        CrmCommand::Configure {
            consumer_key,
            consumer_secret_stdin,
            login_url,
        } => {
            let mut settings = vec![json!({"key": "consumer-key", "value": consumer_key})];
            if consumer_secret_stdin {
                let mut secret = String::new();
                std::io::stdin()
                    .read_line(&mut secret)
                    .context("cannot read the Consumer Secret from standard input")?;
                let secret = secret.trim();
                if secret.is_empty() {
                    anyhow::bail!(
                        "standard input held no Consumer Secret; pipe it in, e.g. `printf %s \"$SECRET\" | pbx-host crm configure ...`"
                    );
                }
                settings.push(json!({"key": "consumer-secret", "value": secret}));
            }
            if let Some(url) = login_url {
                settings.push(json!({"key": "login-url", "value": url}));
            }
            let saved = client
                .put(
                    &format!("/crm/{plugin}/settings"),
                    &json!({"settings": settings}),
                )
                .await?;
            println!(
                "Saved. Status: {}",
                saved["status"]["message"].as_str().unwrap_or("?")
            );
        }
        CrmCommand::Authorize { no_browser } => authorize(&client, plugin, no_browser).await?,
        CrmCommand::Users {
            command: UsersCommand::Sync,
        } => users::sync(&client, plugin).await?,
        CrmCommand::Users {
            command: UsersCommand::List { json },
        } => users::list(&client, plugin, json).await?,
        CrmCommand::Associate {
            auto: true, yes, ..
        } => users::associate_auto(&client, plugin, yes).await?,
        CrmCommand::Associate {
            user, extension, ..
        } => {
            let (Some(user), Some(extension)) = (user, extension) else {
                anyhow::bail!("give a user (id or e-mail) and an extension, or --auto");
            };
            users::associate(&client, plugin, &user, Some(&extension)).await?;
        }
        CrmCommand::Unassociate { user } => users::associate(&client, plugin, &user, None).await?,
        CrmCommand::Disconnect => {
            let status = client
                .post(&format!("/crm/{plugin}/disconnect"), &json!({}))
                .await?;
            println!("Status: {}", status["message"].as_str().unwrap_or("?"));
            if let Some(problem) = status["problem"].as_str() {
                println!("Problem: {problem}");
            }
        }
    }
    Ok(())
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
    if no_browser {
        println!("{url}");
        return Ok(());
    }
    let opened = std::process::Command::new("xdg-open")
        .arg(url)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !opened {
        eprintln!("Open this page in a browser to authorize:\n{url}");
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
                println!(
                    "Authorization succeeded! Status: {}",
                    status["message"].as_str().unwrap_or("?")
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

fn print_json(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}
