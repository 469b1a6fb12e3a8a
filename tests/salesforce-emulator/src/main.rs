//! `salesforce-emulator`: runs an emulated Salesforce org until killed.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use salesforce_emulator::{ConnectedApp, Emulator, EmulatorConfig, Seed};

/// A Salesforce org emulator (OAuth + REST over HTTPS) for tests.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Write the PEM of the emulator's CA here (clients trust it).
    #[arg(long)]
    ca_cert_out: Option<PathBuf>,
    /// Org data to load (JSON, or TOML when the name ends in .toml).
    #[arg(long)]
    seed: Option<PathBuf>,
    /// Users of a generated org (the first is admin@example.org).
    #[arg(long, default_value_t = 10)]
    users: usize,
    /// Contacts of a generated org.
    #[arg(long, default_value_t = 20)]
    contacts: usize,
    /// Leads of a generated org.
    #[arg(long, default_value_t = 10)]
    leads: usize,
    /// Accounts of a generated org.
    #[arg(long, default_value_t = 5)]
    accounts: usize,
    /// A connected app: KEY:SECRET:CALLBACK_URL (repeatable).
    #[arg(long = "app")]
    apps: Vec<String>,
    /// Password of admin@example.org (and of every generated user).
    #[arg(long, default_value = "emulator")]
    admin_password: String,
    /// Authorization code lifetime in seconds.
    #[arg(long, default_value_t = 900)]
    code_lifetime_secs: u64,
    /// Daily API request limit.
    #[arg(long, default_value_t = 100_000)]
    api_daily_limit: u64,
    /// Serve plain HTTP instead of HTTPS.
    #[arg(long)]
    insecure_http: bool,
    /// The org has Person Accounts.
    #[arg(long)]
    person_accounts: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let seed = args.seed.as_deref().map(Seed::from_path).transpose()?;
    let apps = args
        .apps
        .iter()
        .map(|a| ConnectedApp::parse_cli(a))
        .collect::<Result<Vec<_>, _>>()?;
    let config = EmulatorConfig {
        listen: args.listen,
        tls: !args.insecure_http,
        users: args.users,
        contacts: args.contacts,
        leads: args.leads,
        accounts: args.accounts,
        seed,
        apps,
        admin_password: args.admin_password,
        code_lifetime: std::time::Duration::from_secs(args.code_lifetime_secs),
        api_daily_limit: args.api_daily_limit,
        person_accounts: args.person_accounts,
        ..EmulatorConfig::default()
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let emu = Emulator::start(config).await?;
        emulator_kit::cli::announce(
            &emu.base_url(),
            &emu.ca_cert_pem(),
            args.ca_cert_out.as_deref(),
        )?;
        eprintln!(
            "salesforce-emulator: org {} listening on {} (admin@example.org); Ctrl-C to stop",
            emu.org_id(),
            emu.base_url()
        );
        stop_requested().await?;
        emu.shutdown().await;
        anyhow::Ok(())
    })
}

/// Ctrl-C or SIGTERM (what a supervisor sends) stops the emulator cleanly.
async fn stop_requested() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r,
            _ = term.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await
    }
}
