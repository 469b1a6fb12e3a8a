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
pub mod certificates;
mod cross_site;
mod error;
pub mod listener;
mod oauth;
mod operator;
mod pages;
mod portal;
pub mod sessions;
mod state;
mod tenancy;

pub use api::check_authorization_url;
pub use error::ApiError;
pub use operator::OPERATOR_TOKEN_FILE;
pub use state::{AppState, AuthorizationOutcome, BrowserBookkeeping};
pub use tenancy::{Pbx, Pbxs};

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::serve::ListenerExt;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::config::HostConfig;
use crate::files::write_private;
use crate::outbound;
use crate::runtime::SharedEngine;

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
    /// The admin token of the host's own PBX at its start (also in the
    /// data directory).
    pub admin_token: String,
    /// The operator token at the start (also in the data directory).
    pub operator_token: String,
    /// The host's own PBX's handler state, for in-process tests.
    pub state: Arc<AppState>,
    /// Every PBX it serves.
    pub pbxs: Arc<Pbxs>,
    /// Whether it serves HTTPS.
    pub tls: bool,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
    /// Follows the tenants other replicas change (on a shared store).
    tenant_follower: Option<JoinHandle<()>>,
}

impl RunningHost {
    /// The base URL of the portal and admin API.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Stop serving and wait for the server to end.
    pub async fn shutdown(mut self) {
        if let Some(follower) = self.tenant_follower.take() {
            follower.abort();
            let _ = follower.await;
        }
        // The journals' tickers and fleet listeners; live streams (agent
        // pages) would keep the graceful shutdown waiting.
        self.pbxs.stop_all().await;
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.task).await;
        // axum's server future ends before its last connection tasks drop
        // their copy of the router (and so of the state and its store):
        // wait, briefly, for them, so the store is closed when this returns
        // and the data directory can be opened again at once.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while Arc::strong_count(&self.pbxs) > 1 && std::time::Instant::now() < deadline {
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

/// Open the store, load installed plugins, bind, and serve the host's own
/// PBX and every tenant.
pub async fn start(mut config: HostConfig) -> anyhow::Result<RunningHost> {
    let store = config.store.open(&config.data_dir)?;
    let http = outbound::Client::new(outbound::ClientConfig {
        extra_roots_pem: config.trust_ca_pem.clone(),
        limits: config.outbound,
        user_agent: format!("pbx-host/{}", env!("CARGO_PKG_VERSION")),
    })?;
    let shared = SharedEngine::new(&config.limits)?;

    let own_token = auth::fleet_token(&store, &config.data_dir.join(ADMIN_TOKEN_FILE))?;
    let kept_operator_token =
        auth::operator_token(&store, &config.data_dir.join(operator::OPERATOR_TOKEN_FILE))?;
    let admin_token = own_token.current().unwrap_or_default();
    let operator_token = kept_operator_token.current().unwrap_or_default();
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
        Some((_, cert_pem, _)) => write_private(&admin_cert, cert_pem)
            .with_context(|| format!("cannot write {}", admin_cert.display()))?,
        None => {
            let _ = std::fs::remove_file(&admin_cert);
        }
    }
    let admin_url = config.data_dir.join(ADMIN_URL_FILE);
    write_private(&admin_url, format!("{scheme}://{addr}\n").as_bytes())
        .with_context(|| format!("cannot write {}", admin_url.display()))?;

    let common = tenancy::Common {
        config: config.clone(),
        http,
        shared,
        certificates: tls
            .as_ref()
            .map(|(_, _, certificates)| certificates.clone()),
    };
    let own = tenancy::open_pbx(
        &common,
        crate::tenants::DEFAULT_TENANT,
        store.clone(),
        config,
        own_token,
        None,
    )?;
    let pbxs = {
        let store = store.clone();
        // Opening the tenants loads their plugins: off the async workers.
        let opened = tokio::task::spawn_blocking(move || {
            tenancy::Pbxs::open(common, store, own, kept_operator_token)
        });
        Arc::new(opened.await??)
    };
    let state = pbxs.default.state.clone();
    let tenant_follower = tenancy::spawn_follower(&pbxs);
    let app = router_of_host(pbxs.clone()).into_make_service_with_connect_info::<SocketAddr>();
    let (tx, rx) = oneshot::channel::<()>();
    let stop = async {
        let _ = rx.await;
    };
    let task = match tls {
        Some((config, _, _)) => {
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
        tenants = pbxs.served().len(),
        "pbx-host serving"
    );
    Ok(RunningHost {
        addr,
        admin_token,
        operator_token,
        state,
        pbxs,
        tls: scheme == "https",
        shutdown: Some(tx),
        task,
        tenant_follower,
    })
}

/// The whole listener: the operator API, and every other request to the
/// PBX its `Host` names.
fn router_of_host(pbxs: Arc<Pbxs>) -> Router {
    Router::new()
        .merge(operator::routes(pbxs.clone()))
        .fallback(tenancy::dispatch)
        .with_state(pbxs)
}

/// One PBX's routes.
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
