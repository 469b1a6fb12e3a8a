//! `pbx-host serve`: the portal, the agent pages, the admin API and the
//! public OAuth callback on one listener. Who may call what:
//!
//! - `api/`: the administrator (admin token or portal session), every route;
//! - `portal`: the administrator's page, and logging in to it;
//! - `agent`: the per-extension pop-up page and its sign-in: the
//!   administrator, or an agent session scoped to that one extension
//!   (`sessions`; CRM sign-in in `agent_sign_in`);
//! - `oauth`: the OAuth callback, open to anyone: it completes only an
//!   authorization whose single-use `state` the caller holds.
//!
//! - `assets`: the pages' scripts and styles, to anyone.
//!
//! `state` holds what handlers share, `error` how the API says no, `pages`
//! the headers and escaping of every HTML page, `cross_site` the check
//! every state-changing request passes, `listener` plain HTTP or HTTPS.

mod agent;
mod agent_sign_in;
mod api;
mod assets;
mod auth;
mod cross_site;
mod error;
pub mod listener;
mod oauth;
mod pages;
mod portal;
pub mod sessions;
mod state;

pub use api::check_authorization_url;
pub use error::ApiError;
pub use state::{AppState, AuthorizationOutcome, BrowserBookkeeping};

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::serve::ListenerExt;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::capabilities::Services;
use crate::capabilities::browser::BrowserRequests;
use crate::config::HostConfig;
use crate::directory::Directory;
use crate::directory::passwords::ExtensionPasswords;
use crate::files::write_private;
use crate::journal::Journal;
use crate::network::{NETWORK_NAMESPACE, Network};
use crate::outbound;
use crate::recent_calls::RecentCalls;
use crate::runtime::Runtime;
use crate::store::Quota;
use crate::user_sync::{RESULT_NAMESPACE as SYNC_RESULT_NAMESPACE, SyncJobs};

/// Where the CLI finds the running host: files in the data directory.
pub const ADMIN_URL_FILE: &str = "admin-url";
/// The admin token file.
pub const ADMIN_TOKEN_FILE: &str = "admin-token";
/// With TLS, a copy of the served certificate chain: the CLI trusts
/// exactly that certificate for the admin URL.
pub const ADMIN_CERT_FILE: &str = "admin-cert.pem";

/// A host that is serving.
pub struct RunningHost {
    /// The bound address.
    pub addr: SocketAddr,
    /// The admin token (also in the data directory).
    pub admin_token: String,
    /// Handler state, for in-process tests.
    pub state: Arc<AppState>,
    /// Whether it serves HTTPS.
    pub tls: bool,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
    ticker: JoinHandle<()>,
    /// Listens to the other replicas (on a shared store).
    fleet: Option<JoinHandle<()>>,
}

impl RunningHost {
    /// The base URL of the portal and admin API.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Stop serving and wait for the server to end.
    pub async fn shutdown(mut self) {
        self.ticker.abort();
        let _ = (&mut self.ticker).await;
        if let Some(fleet) = self.fleet.take() {
            fleet.abort();
            let _ = fleet.await;
        }
        // Live streams (agent pages) would keep the graceful shutdown waiting.
        self.state.stopping.send_replace(true);
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.task).await;
        // axum's server future ends before its last connection tasks drop
        // their copy of the router (and so of the state and its store):
        // wait, briefly, for them, so the store is closed when this returns
        // and the data directory can be opened again at once.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while Arc::strong_count(&self.state) > 1 && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    }

    /// Serve until `signal` fires (then shut down gracefully) or the server
    /// ends on its own.
    pub async fn run_until(mut self, signal: impl std::future::Future<Output = ()>) {
        tokio::select! {
            () = signal => {
                tracing::info!("shutting down");
                self.shutdown().await;
            }
            _ = &mut self.task => {}
        }
    }
}

/// Open the store, load installed plugins, bind, and serve.
pub async fn start(mut config: HostConfig) -> anyhow::Result<RunningHost> {
    let store = config.store.open(&config.data_dir)?;
    let http = outbound::Client::new(outbound::ClientConfig {
        extra_roots_pem: config.trust_ca_pem.clone(),
        limits: config.outbound,
        user_agent: format!("pbx-host/{}", env!("CARGO_PKG_VERSION")),
    })?;
    let services = Arc::new(Services {
        http,
        browser: BrowserRequests::new(config.system_browser).shared_through(&store),
        directory: Directory::new(store.namespace("host/extensions", Quota::UNLIMITED)),
    });
    let mut runtime = Runtime::new(
        &config.data_dir,
        store.clone(),
        services.clone(),
        config.limits.clone(),
        config.grants.clone(),
    )?;
    runtime.set_trust(config.trust.clone());
    let runtime = Arc::new(runtime);
    let loaded = runtime.load_installed()?;
    tracing::info!(plugins = loaded, "installed plugins loaded");

    let admin_token = auth::fleet_token(&store, &config.data_dir.join(ADMIN_TOKEN_FILE))?;
    // Read the TLS files before binding: a bad file stops the start.
    let tls = config
        .tls
        .as_ref()
        .map(listener::server_config)
        .transpose()?;
    let tcp = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = tcp.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    if !config.public_url_given {
        // Without --public-url the PBX is reached where it listens.
        config.public_url = url::Url::parse(&format!("{scheme}://{addr}"))?;
    }
    if let Some(warning) = listener::plain_http_warning(addr, tls.is_some()) {
        tracing::warn!("{warning}");
    }
    let admin_cert = config.data_dir.join(ADMIN_CERT_FILE);
    match &tls {
        Some((_, cert_pem)) => write_private(&admin_cert, cert_pem)
            .with_context(|| format!("cannot write {}", admin_cert.display()))?,
        None => {
            let _ = std::fs::remove_file(&admin_cert);
        }
    }
    let admin_url = config.data_dir.join(ADMIN_URL_FILE);
    write_private(&admin_url, format!("{scheme}://{addr}\n").as_bytes())
        .with_context(|| format!("cannot write {}", admin_url.display()))?;

    let network = Network::open(
        store.namespace(NETWORK_NAMESPACE, Quota::UNLIMITED),
        config.public_url.clone(),
    )?;
    let syncs = SyncJobs::new(store.namespace(SYNC_RESULT_NAMESPACE, Quota::UNLIMITED));
    let journal = Arc::new(Journal::new(
        runtime.clone(),
        &store,
        config.journal_interval,
        config.journal_limits,
    ));
    let ticker = journal.spawn_ticker();
    let fleet = crate::fleet::spawn(&store, runtime.clone(), services.clone());
    let state = Arc::new(AppState {
        auth: auth::Auth::new(
            admin_token.clone(),
            &store,
            sessions::SessionPolicy {
                idle: config.session_idle,
                max_age: config.session_max,
                ..sessions::SessionPolicy::default()
            },
        ),
        passwords: ExtensionPasswords::new(
            store.namespace("host/extension-passwords", Quota::UNLIMITED),
        ),
        agent_sign_ins: agent_sign_in::PendingSignIns::new(&store),
        recent_calls: RecentCalls::new(&store),
        hashing: tokio::sync::Semaphore::new(2),
        config,
        runtime,
        services,
        authorizations: state::AuthorizationOutcomes::new(&store),
        store,
        network,
        syncs,
        journal,
        originations: Default::default(),
        stopping: tokio::sync::watch::channel(false).0,
    });
    let app = router(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
    let (tx, rx) = oneshot::channel::<()>();
    let stop = async {
        let _ = rx.await;
    };
    let task = match tls {
        Some((config, _)) => {
            // tap_io makes axum's ConnectInfo<SocketAddr> work for this listener.
            let tls_listener = listener::TlsListener::new(tcp, config)?.tap_io(|_| ());
            tokio::spawn(async move {
                let served = axum::serve(tls_listener, app)
                    .with_graceful_shutdown(stop)
                    .await;
                if let Err(e) = served {
                    tracing::error!("server failed: {e}");
                }
            })
        }
        None => tokio::spawn(async move {
            let served = axum::serve(tcp, app).with_graceful_shutdown(stop).await;
            if let Err(e) = served {
                tracing::error!("server failed: {e}");
            }
        }),
    };
    tracing::info!(
        portal = %format!("{scheme}://{addr}/"),
        homepage_url = %state.network.homepage_url(),
        "pbx-host serving"
    );
    Ok(RunningHost {
        addr,
        admin_token,
        state,
        tls: scheme == "https",
        shutdown: Some(tx),
        task,
        ticker,
        fleet,
    })
}

fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .merge(portal::routes())
        .merge(oauth::routes())
        .merge(agent::routes())
        .merge(assets::routes())
        .nest("/api", api::routes(state.clone()))
        // Outermost: a refused request reaches no handler.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            cross_site::guard,
        ))
        .with_state(state)
}
