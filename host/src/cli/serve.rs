//! `pbx-host serve`: run the host (portal, admin API, OAuth callback,
//! plugins) with settings from flags or a TOML file; flags win.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;

use super::out::outln;
use crate::config::{FileConfig, HostConfig};

#[derive(Args)]
pub struct ServeArgs {
    /// A TOML file with the same settings (flags win).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Data directory: store, plugins, cache, keys.
    #[arg(long, env = "PBX_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Where the store is: redb (default: DATA_DIR/store.redb), or Redis
    /// shared by replicas: redis://[:PASSWORD@]HOST:PORT, rediss:// for
    /// TLS, redis+cluster://HOST:PORT,HOST:PORT for a Redis Cluster. Every
    /// replica needs a copy of the same DATA_DIR/host.key. Prefer the
    /// environment variable for a URL with a password.
    #[arg(long, env = "PBX_STORE", hide_env_values = true)]
    store: Option<String>,
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
    /// The PBX's time zone, e.g. America/Los_Angeles (default: the machine's);
    /// calls are dated on its day.
    #[arg(long)]
    time_zone: Option<String>,
    /// How often pending call logs are delivered, in milliseconds (default 5000).
    #[arg(long)]
    journal_interval_ms: Option<u64>,
    /// Serve HTTPS with this certificate chain (PEM, the server's certificate first).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// A portal or agent session unused this many seconds ends (default 1800).
    #[arg(long)]
    session_idle_secs: Option<u64>,
    /// A portal or agent session ends this many seconds after sign-in (default 43200).
    #[arg(long)]
    session_max_secs: Option<u64>,
    /// Call events the host's retry queue holds at most; a new failed event
    /// beyond that becomes a dead letter (default 10000).
    #[arg(long)]
    journal_queue_max: Option<usize>,
    /// Deliveries of one call event at most before it becomes a dead letter
    /// (default 20).
    #[arg(long)]
    journal_max_attempts: Option<u32>,
    /// Seconds a call event stays in the retry queue at most before it
    /// becomes a dead letter (default 86400).
    #[arg(long)]
    journal_max_age_s: Option<u64>,
    /// Dead letters kept at most; beyond that the oldest is dropped
    /// (default 1000).
    #[arg(long)]
    journal_dead_letters_max: Option<usize>,
}

pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        // Colours only on a terminal: a log redirected to a file stays text.
        .with_ansi(std::io::stdout().is_terminal())
        .init();
    let mut file = match &args.config {
        Some(path) => FileConfig::read(path)?,
        None => FileConfig::default(),
    };
    // Flags win over the file.
    file.data_dir = args.data_dir.or(file.data_dir);
    file.store = args.store.or(file.store);
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
    file.time_zone = args.time_zone.or(file.time_zone);
    file.journal_interval_ms = args.journal_interval_ms.or(file.journal_interval_ms);
    file.tls_cert = args.tls_cert.or(file.tls_cert);
    file.tls_key = args.tls_key.or(file.tls_key);
    file.session_idle_secs = args.session_idle_secs.or(file.session_idle_secs);
    file.session_max_secs = args.session_max_secs.or(file.session_max_secs);
    file.journal_queue_max = args.journal_queue_max.or(file.journal_queue_max);
    file.journal_max_attempts = args.journal_max_attempts.or(file.journal_max_attempts);
    file.journal_max_age_s = args.journal_max_age_s.or(file.journal_max_age_s);
    file.journal_dead_letters_max = args
        .journal_dead_letters_max
        .or(file.journal_dead_letters_max);
    if args.system_browser {
        file.system_browser = Some(true);
    }
    let config = HostConfig::from_file(file)?;
    let host = crate::server::start(config).await?;
    // Through `outln!`: a closed stdout must not end the host it started.
    outln!("portal: {}/", host.url());
    host.run_until(stop_requested()).await;
    Ok(())
}

/// Ctrl-C, or SIGTERM (what systemd, Docker and process supervisors send):
/// either one shuts the host down gracefully, so the store is closed and
/// running calls finish.
async fn stop_requested() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(e) => {
                tracing::warn!("cannot listen for SIGTERM ({e}); only Ctrl-C stops the host");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
