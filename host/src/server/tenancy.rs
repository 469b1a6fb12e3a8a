//! The PBXs one host serves: its own (the default tenant, every request
//! whose `Host` is no tenant's) and the operator's tenants, each routed by
//! the `Host` of its public URL. Each is a [`Pbx`]: its own store scope,
//! runtime (on the process's one engine, so a plugin version is compiled
//! once), services, handler state and background tasks, built by
//! [`open_pbx`]; nothing of one reaches another's.
//!
//! Routing by `Host` rather than by a path prefix keeps every page, script
//! and Callback URL of a tenant exactly as the host's own PBX has them:
//! each tenant is a site of its own to the browser, so its cookies and
//! pages are apart from the others' by the browser's own rules.
//!
//! On a shared store the other replicas hear of each change to the tenants
//! (`tenants` fleet topic) and follow the records on a timer too.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use anyhow::Context;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::task::JoinHandle;
use tower::ServiceExt;

use super::certificates::{Certificate, Certificates};
use super::state::{self, AppState};
use super::{agent_sign_in, auth, router, sessions};
use crate::capabilities::Services;
use crate::capabilities::browser::BrowserRequests;
use crate::config::HostConfig;
use crate::directory::Directory;
use crate::directory::passwords::ExtensionPasswords;
use crate::journal::Journal;
use crate::network::{NETWORK_NAMESPACE, Network};
use crate::outbound;
use crate::recent_calls::RecentCalls;
use crate::runtime::{Runtime, SharedEngine};
use crate::store::{Quota, RESYNC, Store};
use crate::tenants::{
    DEFAULT_TENANT, TenantError, TenantRecord, TenantStatus, Tenants, authority_of,
};
use crate::user_sync::{RESULT_NAMESPACE as SYNC_RESULT_NAMESPACE, SyncJobs};

/// The fleet topic of changes to the tenants (root store).
pub const TENANTS_TOPIC: &str = "tenants";

/// What every PBX of the process is built with.
pub struct Common {
    /// The host's configuration (each PBX gets a copy with its own public URL).
    pub config: HostConfig,
    /// The outbound client, with its connection pool, for every PBX.
    pub http: outbound::Client,
    /// The engine, pool and compiled components.
    pub shared: Arc<SharedEngine>,
    /// The certificates served by name, when the host serves HTTPS.
    pub certificates: Option<Arc<Certificates>>,
}

/// One PBX the host serves.
pub struct Pbx {
    /// Its tenant name ([`DEFAULT_TENANT`] for the host's own).
    pub name: String,
    /// Its handler state.
    pub state: Arc<AppState>,
    /// When its tenant's record was added (0 for the host's own PBX): a
    /// tenant removed and added again under its name is another tenant.
    added_at_ms: u64,
    /// The digest of its own certificate as its record said when the
    /// certificate was last loaded here.
    certificate: std::sync::Mutex<Option<String>>,
    router: Router,
    suspended: AtomicBool,
    tasks: std::sync::Mutex<Vec<JoinHandle<()>>>,
}

impl Pbx {
    /// Whether it is suspended (nothing of it is served).
    pub fn is_suspended(&self) -> bool {
        self.suspended.load(Ordering::Relaxed)
    }

    fn set_status(&self, status: TenantStatus) {
        let suspended = status != TenantStatus::Active;
        self.suspended.store(suspended, Ordering::Relaxed);
        // Nor does it act for the tenant: its queued call events and
        // plugins' pending work wait until it is resumed.
        self.state.journal.pause(suspended);
    }

    fn certificate_loaded(&self, digest: Option<String>) {
        *self.certificate.lock().unwrap_or_else(|p| p.into_inner()) = digest;
    }

    /// Whether its certificate as last loaded is the one of `digest`.
    fn has_certificate(&self, digest: Option<&str>) -> bool {
        self.certificate
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_deref()
            == digest
    }

    /// Stop its background tasks (the journal's ticker, its fleet
    /// listener) and end its live streams; the tasks, to wait for.
    pub(super) fn stop_tasks(&self) -> Vec<JoinHandle<()>> {
        self.state.stopping.send_replace(true);
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for task in &tasks {
            task.abort();
        }
        tasks
    }

    /// Serve `request`, which the operator sends into this PBX's admin API,
    /// suspended or not.
    pub(super) async fn serve_as_operator(&self, request: Request) -> Response {
        match self.router.clone().oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        }
    }

    /// Serve `request` as this PBX.
    pub(super) async fn serve(&self, request: Request) -> Response {
        if self.is_suspended() {
            let api = request.uri().path().starts_with("/api/");
            return suspended(&self.name, api);
        }
        self.serve_as_operator(request).await
    }
}

/// Build one PBX on `store` (the host's own, or a tenant's scope), whose
/// public URL is `config.public_url`, administered with `admin_token`.
pub fn open_pbx(
    common: &Common,
    name: &str,
    store: Store,
    mut config: HostConfig,
    admin_token: auth::KeptToken,
    kv: Option<Quota>,
) -> anyhow::Result<Pbx> {
    let services = Arc::new(Services {
        http: common.http.clone(),
        browser: BrowserRequests::new(config.system_browser).shared_through(&store),
        directory: Directory::new(store.namespace("host/extensions", Quota::UNLIMITED)),
    });
    if let Some(kv) = kv {
        config.limits.kv = kv;
    }
    let mut runtime = Runtime::sharing(
        common.shared.clone(),
        &config.data_dir,
        store.clone(),
        services.clone(),
        config.limits.clone(),
        config.grants.clone(),
    )?;
    runtime.set_trust(config.trust.clone());
    let runtime = Arc::new(runtime);
    let loaded = runtime.load_installed()?;
    tracing::debug!(tenant = name, plugins = loaded, "installed plugins loaded");
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
    let mut tasks = vec![journal.spawn_ticker()];
    tasks.extend(crate::fleet::spawn(
        &store,
        runtime.clone(),
        services.clone(),
    ));
    let state = Arc::new(AppState {
        auth: auth::Auth::new(
            admin_token,
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
        tenant: (name != DEFAULT_TENANT).then(|| name.to_string()),
    });
    Ok(Pbx {
        name: name.to_string(),
        added_at_ms: 0,
        certificate: Default::default(),
        router: router(state.clone()),
        state,
        suspended: AtomicBool::new(false),
        tasks: std::sync::Mutex::new(tasks),
    })
}

/// Every PBX the host serves, and how requests find theirs.
pub struct Pbxs {
    /// What each PBX is built with.
    pub common: Common,
    /// The root store.
    pub store: Store,
    /// The tenants' records.
    pub tenants: Tenants,
    /// The host's own PBX.
    pub default: Arc<Pbx>,
    /// The operator's token (the operator API).
    pub(super) operator_token: auth::KeptToken,
    by_name: RwLock<HashMap<String, Arc<Pbx>>>,
    /// `Host` authority to tenant name.
    by_authority: RwLock<HashMap<String, String>>,
    /// Serializes the operator's changes on this replica.
    pub(super) changes: tokio::sync::Mutex<()>,
}

impl Pbxs {
    /// The host's own PBX and every tenant in the store, opened.
    pub fn open(
        common: Common,
        store: Store,
        default: Pbx,
        operator_token: auth::KeptToken,
    ) -> anyhow::Result<Pbxs> {
        let pbxs = Pbxs {
            common,
            tenants: Tenants::new(&store),
            store,
            default: Arc::new(default),
            operator_token,
            by_name: RwLock::default(),
            by_authority: RwLock::default(),
            changes: tokio::sync::Mutex::new(()),
        };
        let records = pbxs.tenants.list().context("cannot read the tenants")?;
        for record in records
            .iter()
            .filter(|r| r.status != TenantStatus::Removing)
        {
            // One tenant that cannot open does not stop the others.
            if let Err(e) = pbxs.open_tenant(record) {
                tracing::error!(tenant = %record.name, "tenant not served: {e:#}");
            }
        }
        tracing::info!(tenants = records.len(), "tenants opened");
        Ok(pbxs)
    }

    /// The PBX named `name` ([`DEFAULT_TENANT`] is the host's own).
    pub fn get(&self, name: &str) -> Option<Arc<Pbx>> {
        if name == DEFAULT_TENANT {
            return Some(self.default.clone());
        }
        read(&self.by_name).get(name).cloned()
    }

    /// Every tenant being served (not the host's own PBX), by name.
    pub fn served(&self) -> Vec<Arc<Pbx>> {
        let mut all: Vec<_> = read(&self.by_name).values().cloned().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// The PBX a request with this `Host` header is for.
    pub fn route(&self, host: Option<&str>) -> Arc<Pbx> {
        let name = host.and_then(|h| read(&self.by_authority).get(&normalize(h)).cloned());
        name.and_then(|n| self.get(&n))
            .unwrap_or_else(|| self.default.clone())
    }

    /// The tenant that routes by `authority`, if any.
    pub fn routed_by(&self, authority: &str) -> Option<String> {
        read(&self.by_authority).get(authority).cloned()
    }

    /// Open and serve tenant `record` (its admin token is in its store).
    pub(super) fn open_tenant(&self, record: &TenantRecord) -> anyhow::Result<Arc<Pbx>> {
        let store = self.store.tenant(&record.name);
        let token = auth::KeptToken::of_tenant(&store, auth::tenant_token(&store)?);
        let mut config = self.common.config.clone();
        config.public_url = record.url()?;
        config.public_url_given = true;
        let mut pbx = open_pbx(
            &self.common,
            &record.name,
            store,
            config,
            token,
            record.kv.as_ref().map(|kv| kv.quota()),
        )?;
        pbx.added_at_ms = record.created_at_ms;
        pbx.set_status(record.status);
        let pbx = Arc::new(pbx);
        let authority = record.authority()?;
        {
            // Reopened at a new public URL: the old one reaches it no more.
            let mut by_authority = write(&self.by_authority);
            by_authority.retain(|_, n| n != &record.name);
            by_authority.insert(authority, record.name.clone());
        }
        if let Some(old) = write(&self.by_name).insert(record.name.clone(), pbx.clone()) {
            old.stop_tasks();
        }
        self.load_certificate(record, &pbx);
        Ok(pbx)
    }

    /// Serve tenant `record`'s own certificate, if it keeps one, at its
    /// host name (HTTPS hosts only). A store that cannot say leaves what
    /// was served, and says so (the next follow tries again).
    fn load_certificate(&self, record: &TenantRecord, pbx: &Pbx) {
        let Some(certificates) = &self.common.certificates else {
            return;
        };
        let Some(host) = pbx.state.config.public_url.host_str() else {
            return;
        };
        if record.certificate.is_none() {
            // It keeps none, as its record says: nothing to read.
            certificates.forget(&record.name);
            pbx.certificate_loaded(None);
            return;
        }
        match certificates.load(&record.name, host, &pbx.state.store) {
            Ok(()) => pbx.certificate_loaded(record.certificate.clone()),
            Err(e) => {
                tracing::error!(tenant = %record.name, "its certificate could not be read: {e}")
            }
        }
    }

    /// Serve `certificate` (`None`: the host's) for tenant `record`, which
    /// names it, here at once: the operator just gave it or took it away.
    pub(super) fn serve_certificate(
        &self,
        record: &TenantRecord,
        certificate: Option<&Certificate>,
    ) {
        let (Some(certificates), Some(pbx)) = (&self.common.certificates, self.get(&record.name))
        else {
            return;
        };
        match (certificate, pbx.state.config.public_url.host_str()) {
            (Some(certificate), Some(host)) => certificates.serve(&record.name, host, certificate),
            _ => certificates.forget(&record.name),
        }
        pbx.certificate_loaded(record.certificate.clone());
    }

    /// Stop serving tenant `name` here; the PBX that served it.
    pub(super) fn close_tenant(&self, name: &str) -> Option<Arc<Pbx>> {
        let pbx = write(&self.by_name).remove(name)?;
        write(&self.by_authority).retain(|_, n| n != name);
        if let Some(certificates) = &self.common.certificates {
            certificates.forget(name);
        }
        pbx.stop_tasks();
        // Its files no longer count as in use here.
        pbx.state.runtime.release();
        Some(pbx)
    }

    /// Serve what the records say: open the tenants added elsewhere, close
    /// those removed, and take each one's status (another replica's
    /// operator changes, on a shared store). Public for tests, which play
    /// a replica that missed changes.
    pub fn follow(&self) -> Result<(), TenantError> {
        let records = self.tenants.list()?;
        let mut seen = std::collections::HashSet::new();
        for record in &records {
            if record.status == TenantStatus::Removing {
                continue;
            }
            seen.insert(record.name.clone());
            match self.get(&record.name) {
                Some(pbx)
                    if pbx.added_at_ms == record.created_at_ms
                        && record.url().ok().as_ref() == Some(&pbx.state.config.public_url) =>
                {
                    pbx.set_status(record.status);
                    // Given or taken away on another replica.
                    if !pbx.has_certificate(record.certificate.as_deref()) {
                        self.load_certificate(record, &pbx);
                    }
                }
                // New, moved to another public URL, or removed and added
                // again while this replica did not look: opened (again).
                _ => {
                    if let Err(e) = self.open_tenant(record) {
                        tracing::error!(tenant = %record.name, "tenant not served: {e:#}");
                    }
                }
            }
        }
        let gone: Vec<String> = read(&self.by_name)
            .keys()
            .filter(|name| !seen.contains(*name))
            .cloned()
            .collect();
        for name in gone {
            self.close_tenant(&name);
            tracing::info!(tenant = %name, "tenant removed elsewhere; no longer served");
        }
        Ok(())
    }

    /// Take `record`'s status here at once.
    pub(super) fn set_status(&self, record: &TenantRecord) {
        if let Some(pbx) = self.get(&record.name) {
            pbx.set_status(record.status);
        }
    }

    /// Tell the other replicas the tenants changed.
    pub(super) fn announce(&self) {
        self.store.announce(TENANTS_TOPIC, b"");
    }

    /// Stop every PBX's background tasks, and wait for them to end.
    pub(super) async fn stop_all(&self) {
        let mut tasks = self.default.stop_tasks();
        for pbx in self.served() {
            tasks.extend(pbx.stop_tasks());
        }
        for task in tasks {
            let _ = task.await;
        }
    }
}

/// Whether `authority` is the host's own or one tenant routes by already.
pub(super) fn authority_taken(pbxs: &Pbxs, authority: &str) -> bool {
    if pbxs.routed_by(authority).is_some() {
        return true;
    }
    url::Url::parse(pbxs.default.state.network.homepage_url().as_str())
        .ok()
        .and_then(|u| authority_of(&u).ok())
        .is_some_and(|own| own == authority)
}

fn normalize(host: &str) -> String {
    let host = host.trim().to_ascii_lowercase();
    // `Host: acme.example:443` on https is `acme.example`; the scheme is
    // not known here, so both default ports are dropped (a tenant routed
    // by an explicit :80 or :443 is still found by its name alone).
    host.strip_suffix(":443")
        .or_else(|| host.strip_suffix(":80"))
        .map(str::to_string)
        .unwrap_or(host)
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|p| p.into_inner())
}

/// Every request that is not the operator's: to the PBX its `Host` names.
pub(super) async fn dispatch(State(pbxs): State<Arc<Pbxs>>, request: Request) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        // HTTP/2 carries it in the URI.
        .or_else(|| request.uri().authority().map(|a| a.to_string()));
    let pbx = pbxs.route(host.as_deref());
    pbx.serve(request).await
}

/// What a suspended tenant answers: JSON to its API (the PBX and
/// scripts), a page to a browser.
fn suspended(name: &str, api: bool) -> Response {
    let message = format!(
        "This PBX ({name}) is suspended by its operator. Nothing it keeps is lost, and it is served again once resumed."
    );
    let mut response = if api {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({"error": message, "kind": "suspended"})),
        )
            .into_response()
    } else {
        super::pages::page(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>PBX suspended</title>
{}<link rel="stylesheet" href="/assets/page.css"></head>
<body><h1>This PBX is suspended</h1>
<p id="suspended" role="alert">{}</p></body></html>"#,
                super::pages::FAVICON,
                super::pages::message_html(&message)
            ),
        )
    };
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from_static("300"));
    response
}

/// Follow the tenants' records on a shared store: on each change another
/// replica announces, when messages may have been missed, and every
/// [`crate::fleet::FOLLOW_EVERY`].
pub(super) fn spawn_follower(pbxs: &Arc<Pbxs>) -> Option<JoinHandle<()>> {
    if !pbxs.store.is_shared() {
        return None;
    }
    let mut listener = pbxs.store.listen();
    let weak = Arc::downgrade(pbxs);
    Some(tokio::spawn(async move {
        let mut timer = tokio::time::interval(crate::fleet::FOLLOW_EVERY);
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                heard = listener.next() => match heard {
                    Some(heard) if heard.topic == TENANTS_TOPIC || heard.topic == RESYNC => {}
                    Some(_) => continue,
                    None => return,
                },
                _ = timer.tick() => {}
            }
            let Some(pbxs) = weak.upgrade() else {
                return;
            };
            // Not while this replica's operator changes a tenant (a tenant
            // being removed must not be opened again meanwhile).
            let changes = pbxs.changes.lock().await;
            // Opening a tenant loads its plugins: off the async workers.
            let following = pbxs.clone();
            let followed = tokio::task::spawn_blocking(move || following.follow()).await;
            drop(changes);
            match followed {
                Ok(Err(e)) => tracing::warn!("cannot follow the tenants: {e}"),
                Err(e) => tracing::error!("following the tenants failed: {e}"),
                Ok(Ok(())) => {}
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn a_host_header_is_compared_as_the_public_urls_authority() {
        assert_eq!(normalize("PBX.Acme.example"), "pbx.acme.example");
        assert_eq!(normalize("pbx.acme.example:443"), "pbx.acme.example");
        assert_eq!(normalize("pbx.acme.example:80"), "pbx.acme.example");
        assert_eq!(normalize("acme.localhost:8080"), "acme.localhost:8080");
        assert_eq!(normalize(" pbx.acme.example "), "pbx.acme.example");
    }
}
