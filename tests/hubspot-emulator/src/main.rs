//! `hubspot-emulator`: runs an emulated HubSpot account until killed.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use hubspot_emulator::{App, Emulator, EmulatorConfig, User};

/// A HubSpot account emulator (OAuth + CRM APIs over HTTPS) for tests.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Write the PEM of the emulator's CA here (clients trust it).
    #[arg(long)]
    ca_cert_out: Option<PathBuf>,
    /// An app: CLIENT_ID:CLIENT_SECRET:REDIRECT_URI (repeatable).
    #[arg(long = "app")]
    apps: Vec<String>,
    /// Password of admin@example.com.
    #[arg(long, default_value = "emulator")]
    admin_password: String,
    /// Requests allowed per rolling 10 seconds.
    #[arg(long, default_value_t = 110)]
    rate_limit_per_10s: u32,
    /// Serve plain HTTP instead of HTTPS.
    #[arg(long)]
    insecure_http: bool,
    /// An owner who cannot log in here: EMAIL:FIRST:LAST (repeatable).
    #[arg(long = "owner")]
    owners: Vec<String>,
    /// A contact: FIRST:LAST:PHONE (repeatable; the phone as stored).
    #[arg(long = "contact")]
    contacts: Vec<String>,
}

/// `A:B:C`, each part non-empty.
fn three_parts<'a>(spec: &'a str, flag: &str, shape: &str) -> anyhow::Result<[&'a str; 3]> {
    let mut parts = spec.splitn(3, ':');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(a), Some(b), Some(c)) if !a.is_empty() && !b.is_empty() && !c.is_empty() => {
            Ok([a, b, c])
        }
        _ => anyhow::bail!("--{flag} expects {shape}, got {spec:?}"),
    }
}

fn parse_app(spec: &str) -> anyhow::Result<App> {
    let mut parts = spec.splitn(3, ':');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(id), Some(secret), Some(uri))
            if !id.is_empty() && !secret.is_empty() && !uri.is_empty() =>
        {
            Ok(App::new(id, secret, uri))
        }
        _ => anyhow::bail!("--app expects CLIENT_ID:CLIENT_SECRET:REDIRECT_URI, got {spec:?}"),
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let apps = args
        .apps
        .iter()
        .map(|a| parse_app(a))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let owners = args
        .owners
        .iter()
        .map(|o| three_parts(o, "owner", "EMAIL:FIRST:LAST"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let contacts = args
        .contacts
        .iter()
        .map(|c| three_parts(c, "contact", "FIRST:LAST:PHONE"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let config = EmulatorConfig {
        listen: args.listen,
        tls: !args.insecure_http,
        apps,
        users: vec![User::new("admin@example.com", args.admin_password)],
        rate_limit_per_10s: args.rate_limit_per_10s,
        ..EmulatorConfig::default()
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let emu = Emulator::start(config).await?;
        for [email, first, last] in owners {
            emu.add_owner(email, first, last);
        }
        for [first, last, phone] in contacts {
            emu.insert(
                "contacts",
                &[("firstname", first), ("lastname", last), ("phone", phone)],
            )?;
        }
        emulator_kit::cli::announce(
            &emu.base_url(),
            &emu.ca_cert_pem(),
            args.ca_cert_out.as_deref(),
        )?;
        eprintln!(
            "hubspot-emulator: hub {} listening on {} (admin@example.com); Ctrl-C to stop",
            emu.hub_id(),
            emu.base_url()
        );
        tokio::signal::ctrl_c().await?;
        emu.shutdown().await;
        anyhow::Ok(())
    })
}
