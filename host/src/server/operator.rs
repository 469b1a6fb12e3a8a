//! The operator API, `/operator/…`: the party who hosts the PBXs adds,
//! lists, suspends, resumes and removes tenants, and acts inside any one
//! of them (`/operator/tenants/NAME/api/…` is that tenant's admin API).
//! Every route is the operator's alone: the operator token as a bearer
//! token (`DATA_DIR/operator-token`), never a tenant's admin token or a
//! portal session, whichever `Host` the request names. No cookie is
//! accepted, so no browser page can make a request here on its own.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, delete, get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::certificates::{self, Certificate};
use super::error::ApiError;
use super::sessions::{SessionPolicy, Sessions};
use super::tenancy::{Pbx, Pbxs, authority_taken};
use crate::runtime::manifest::KvRequest;
use crate::tenants::{
    DEFAULT_TENANT, TenantError, TenantRecord, TenantStatus, authority_of, check_name,
    check_public_url,
};

type St = State<Arc<Pbxs>>;

/// The operator token file.
pub const OPERATOR_TOKEN_FILE: &str = "operator-token";

/// Marks a request the operator sends into a tenant's admin API: the
/// tenant's administrator check lets it pass. Only this module inserts it,
/// after checking the operator token.
#[derive(Debug, Clone, Copy)]
pub struct OperatorActing;

/// The largest body forwarded into a tenant (a plugin upload).
const MAX_FORWARDED_BYTES: usize = 64 << 20;

pub(super) fn routes(pbxs: Arc<Pbxs>) -> Router<Arc<Pbxs>> {
    Router::new()
        .route("/operator/token", post(new_operator_token))
        .route("/operator/tenants", get(list).post(add))
        .route("/operator/tenants/{name}", delete(remove))
        .route("/operator/tenants/{name}/suspend", post(suspend))
        .route("/operator/tenants/{name}/resume", post(resume))
        .route(
            "/operator/tenants/{name}/admin-token",
            post(new_admin_token),
        )
        .route("/operator/tenants/{name}/public-url", put(move_tenant))
        .route(
            "/operator/tenants/{name}/certificate",
            put(set_certificate).delete(remove_certificate),
        )
        .route(
            "/operator/tenants/{name}/api/{*rest}",
            any(forward).layer(DefaultBodyLimit::max(MAX_FORWARDED_BYTES)),
        )
        .route("/operator/{*rest}", any(unknown))
        .layer(middleware::from_fn_with_state(pbxs, require_operator))
}

/// Middleware: 401 unless the request carries the operator token.
async fn require_operator(State(pbxs): St, request: Request, next: Next) -> Response {
    let bearer = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let allowed = match bearer {
        Some(token) => pbxs.operator_token.matches(token),
        None => Ok(false),
    };
    match allowed {
        Ok(true) => next.run(request).await,
        Err(e) => ApiError::from(e).into_response(),
        Ok(false) => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the operator API needs the operator token as `Authorization: Bearer TOKEN` (it is in DATA_DIR/operator-token); a tenant's admin token is not it",
        )
        .into_response(),
    }
}

async fn unknown() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not-found",
        "no such operator route; see docs/API.md (Operator API)",
    )
}

impl From<TenantError> for ApiError {
    fn from(e: TenantError) -> Self {
        let (status, kind) = match e {
            TenantError::Store(store) => return ApiError::from(store),
            TenantError::BadName(_) | TenantError::BadUrl(_) => {
                (StatusCode::BAD_REQUEST, "invalid-input")
            }
            TenantError::Taken(_) => (StatusCode::CONFLICT, "conflict"),
            TenantError::Unknown(_) => (StatusCode::NOT_FOUND, "not-found"),
        };
        ApiError::new(status, kind, e.to_string())
    }
}

/// A tenant as the operator sees it: its record, what it runs, what it keeps.
fn view(pbxs: &Pbxs, record: &TenantRecord) -> Result<Value, ApiError> {
    let usage = pbxs.store.tenant(&record.name).tenant_usage()?;
    Ok(view_with(pbxs, record, usage))
}

/// [`view`] with its usage read already.
fn view_with(pbxs: &Pbxs, record: &TenantRecord, usage: (usize, crate::store::Usage)) -> Value {
    let plugins: Vec<Value> = pbxs
        .get(&record.name)
        .map(|pbx| {
            pbx.state
                .runtime
                .plugins()
                .into_iter()
                .map(|p| json!({"id": p.manifest.id, "version": p.manifest.version}))
                .collect()
        })
        .unwrap_or_default();
    json!({
        "name": record.name,
        "public_url": record.public_url,
        "status": record.status,
        "served": pbxs.get(&record.name).is_some(),
        "created_at_ms": record.created_at_ms,
        "kv": record.kv,
        "plugins": plugins,
        "usage": {"namespaces": usage.0, "keys": usage.1.keys, "bytes": usage.1.bytes},
        "own_certificate": pbxs
            .common
            .certificates
            .as_ref()
            .is_some_and(|c| c.host_of(&record.name).is_some()),
    })
}

async fn list(State(pbxs): St) -> Result<Json<Value>, ApiError> {
    let listing = blocking(move || -> Result<Value, ApiError> {
        let records = pbxs.tenants.list()?;
        // Every tenant's namespaces are listed once, not once per tenant.
        let mut usages = pbxs.store.tenant_usages("t/")?;
        let views: Vec<Value> = records
            .iter()
            .map(|r| view_with(&pbxs, r, usages.remove(&r.name).unwrap_or_default()))
            .collect();
        Ok(json!({ "tenants": views }))
    })
    .await?;
    Ok(Json(listing))
}

/// `POST /operator/tenants`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewTenant {
    name: String,
    public_url: String,
    /// Each plugin's kv-store quota in this tenant (default: the host's).
    #[serde(default)]
    kv: Option<KvRequest>,
}

async fn add(State(pbxs): St, body: Json<Value>) -> Result<Response, ApiError> {
    let new: NewTenant = serde_json::from_value(body.0).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid-input",
            format!(
                "{e}; send {{\"name\": \"acme\", \"public_url\": \"https://pbx.acme.example\"}}"
            ),
        )
    })?;
    check_name(&new.name)?;
    let url = check_public_url(&new.public_url)?;
    if let Some(kv) = &new.kv
        && (kv.max_keys == 0 || kv.max_mib == 0)
    {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid-input",
            "a tenant's kv-store quota needs keys and MiB above 0",
        )
        .with_field("kv"));
    }
    let authority = authority_of(&url)?;
    let _changes = pbxs.changes.lock().await;
    if authority_taken(&pbxs, &authority) {
        return Err(TenantError::Taken(format!(
            "{authority} already reaches another PBX on this host; give each tenant its own host name"
        ))
        .into());
    }
    let record = TenantRecord {
        name: new.name.clone(),
        public_url: url.to_string(),
        status: TenantStatus::Active,
        created_at_ms: crate::now_ms(),
        kv: new.kv,
        certificate: None,
    };
    let opened = {
        let pbxs = pbxs.clone();
        let record = record.clone();
        blocking(move || -> Result<String, ApiError> {
            let store = pbxs.store.tenant(&record.name);
            // The record first: adding it (only if no record has the name)
            // is what makes the name this request's, so a refused add
            // writes nothing, not even over a tenant's token. Other
            // replicas open it on the announcement, once its token is in.
            pbxs.tenants.add(&record)?;
            // A replica that had not yet heard of an earlier tenant's
            // removal may have written a last key under the name after it:
            // the new tenant inherits nothing of it.
            if let Err(e) = store.remove_tenant_data() {
                let _ = pbxs.tenants.remove(&record.name);
                return Err(e.into());
            }
            let token = match super::auth::new_tenant_token(&store) {
                Ok(token) => token,
                Err(e) => {
                    let _ = pbxs.tenants.remove(&record.name);
                    return Err(e.into());
                }
            };
            if let Err(e) = pbxs.open_tenant(&record) {
                // Nothing half-made stays: no record, no data.
                let _ = pbxs.tenants.remove(&record.name);
                let _ = store.remove_tenant_data();
                return Err(ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    format!("the tenant could not be opened, and was not added: {e:#}"),
                ));
            }
            Ok(token)
        })
        .await
    };
    let token = opened?;
    pbxs.announce();
    tracing::info!(tenant = %record.name, public_url = %record.public_url, "tenant added");
    let view = view(&pbxs, &record)?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "tenant": view, "admin_token": token })),
    )
        .into_response())
}

async fn suspend(State(pbxs): St, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    set_status(pbxs, name, TenantStatus::Suspended).await
}

async fn resume(State(pbxs): St, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    set_status(pbxs, name, TenantStatus::Active).await
}

async fn set_status(
    pbxs: Arc<Pbxs>,
    name: String,
    status: TenantStatus,
) -> Result<Json<Value>, ApiError> {
    let _changes = pbxs.changes.lock().await;
    if pbxs.tenants.get(&name)?.status == TenantStatus::Removing {
        return Err(being_removed(&name));
    }
    let record = pbxs.tenants.set_status(&name, status)?;
    pbxs.set_status(&record);
    pbxs.announce();
    tracing::info!(tenant = %name, ?status, "tenant status changed");
    Ok(Json(json!({ "tenant": view(&pbxs, &record)? })))
}

/// `PUT /operator/tenants/NAME/public-url` `{public_url}`: the tenant
/// moves to another host name (its customer's domain changed). It is
/// reopened there on every replica, and its old host name reaches it no
/// more; everything it keeps stays. Its Callback URLs change with it, so
/// the answer names them: each CRM app must be given the new ones.
async fn move_tenant(
    State(pbxs): St,
    Path(name): Path<String>,
    body: Json<Value>,
) -> Result<Json<Value>, ApiError> {
    let public_url = body.0["public_url"].as_str().ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid-input",
            "send {\"public_url\": \"https://pbx.acme.example\"}",
        )
        .with_field("public_url")
    })?;
    let url = check_public_url(public_url)?;
    let authority = authority_of(&url)?;
    let _changes = pbxs.changes.lock().await;
    let record = pbxs.tenants.get(&name)?;
    if record.status == TenantStatus::Removing {
        return Err(being_removed(&name));
    }
    if record.public_url == url.as_str() {
        // Already there: nothing to do.
        return Ok(Json(json!({
            "tenant": view(&pbxs, &record)?,
            "callback_urls": callback_urls(&pbxs, &record),
        })));
    }
    if record.authority()? != authority && authority_taken(&pbxs, &authority) {
        return Err(TenantError::Taken(format!(
            "{authority} already reaches another PBX on this host; give each tenant its own host name"
        ))
        .into());
    }
    let moved = {
        let pbxs = pbxs.clone();
        blocking(move || -> Result<TenantRecord, ApiError> {
            let moved = pbxs.tenants.set_public_url(&name, &url)?;
            if let Err(e) = pbxs.open_tenant(&moved) {
                // Back where it was: it failed before serving anything at
                // the new URL, so it is served as before.
                let _ = pbxs.tenants.set_public_url(&name, &record.url()?);
                return Err(ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    format!(
                        "the tenant could not be opened at its new URL, and stays at {}: {e:#}",
                        record.public_url
                    ),
                ));
            }
            Ok(moved)
        })
        .await?
    };
    pbxs.announce();
    tracing::info!(tenant = %moved.name, public_url = %moved.public_url, "tenant moved");
    Ok(Json(json!({
        "tenant": view(&pbxs, &moved)?,
        "callback_urls": callback_urls(&pbxs, &moved),
    })))
}

/// Each active plugin's Callback URL in tenant `record`.
fn callback_urls(pbxs: &Pbxs, record: &TenantRecord) -> Vec<Value> {
    pbxs.get(&record.name)
        .map(|pbx| {
            pbx.state
                .runtime
                .plugins()
                .into_iter()
                .map(|p| {
                    let url = pbx.state.network.callback_url(&p.manifest.id);
                    json!({"plugin": p.manifest.id, "callback_url": url})
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `PUT /operator/tenants/NAME/certificate` `{chain_pem, key_pem}`: the
/// tenant's own certificate, served (by SNI) for its host name instead of
/// the host's, on every replica. Refused, changing nothing: a host that
/// serves plain HTTP (TLS ends in front of it), a chain or key that is not
/// usable, a key not the certificate's, a certificate that does not name
/// the tenant's host.
async fn set_certificate(
    State(pbxs): St,
    Path(name): Path<String>,
    body: Json<Value>,
) -> Result<Json<Value>, ApiError> {
    let (Some(chain_pem), Some(key_pem)) =
        (body.0["chain_pem"].as_str(), body.0["key_pem"].as_str())
    else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid-input",
            "send {\"chain_pem\": \"-----BEGIN CERTIFICATE-----…\", \"key_pem\": \"-----BEGIN PRIVATE KEY-----…\"} (`pbx-host tenant set-certificate NAME --cert FILE --key FILE` reads the files)",
        ));
    };
    serving_https(&pbxs)?;
    let _changes = pbxs.changes.lock().await;
    let record = pbxs.tenants.get(&name)?;
    if record.status == TenantStatus::Removing {
        return Err(being_removed(&name));
    }
    let url = record.url()?;
    let host = url.host_str().unwrap_or_default().to_string();
    let certificate = Certificate::from_pem(
        chain_pem.as_bytes(),
        key_pem.as_bytes(),
        ("chain_pem", "key_pem"),
    )
    .and_then(|c| c.names(&host).map(|()| c))
    .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid-input", e.to_string()))?;
    let record = {
        let pbxs = pbxs.clone();
        blocking(move || -> Result<TenantRecord, ApiError> {
            // The certificate first, then its digest in the record: the
            // record is what tells every replica to load it.
            certificates::keep(&pbxs.store.tenant(&record.name), &certificate)?;
            let record = pbxs
                .tenants
                .set_certificate(&record.name, Some(certificate.digest()))?;
            pbxs.serve_certificate(&record, Some(&certificate));
            Ok(record)
        })
        .await?
    };
    pbxs.announce();
    tracing::info!(tenant = %name, %host, "tenant certificate set");
    Ok(Json(
        json!({ "tenant": view(&pbxs, &record)?, "host": host }),
    ))
}

/// `DELETE /operator/tenants/NAME/certificate`: the host's certificate is
/// served for the tenant again, on every replica.
async fn remove_certificate(
    State(pbxs): St,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    serving_https(&pbxs)?;
    let _changes = pbxs.changes.lock().await;
    let record = pbxs.tenants.get(&name)?;
    let (record, had) = {
        let pbxs = pbxs.clone();
        blocking(move || -> Result<_, ApiError> {
            // The record first: no replica loads the certificate again.
            let record = pbxs.tenants.set_certificate(&record.name, None)?;
            let had = certificates::discard(&pbxs.store.tenant(&record.name))?;
            pbxs.serve_certificate(&record, None);
            Ok((record, had))
        })
        .await?
    };
    pbxs.announce();
    tracing::info!(tenant = %name, had, "tenant certificate removed");
    Ok(Json(
        json!({ "tenant": view(&pbxs, &record)?, "removed": had }),
    ))
}

/// Refused unless the host serves HTTPS: a tenant can have no certificate
/// of its own here otherwise.
fn serving_https(pbxs: &Pbxs) -> Result<(), ApiError> {
    pbxs.common.certificates.as_ref().map(|_| ()).ok_or_else(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            "this host serves plain HTTP (TLS ends in front of it, or it is not set up): give the tenant's certificate to the proxy or load balancer, or serve with --tls-cert and --tls-key",
        )
    })
}

/// `POST /operator/token`: a new operator token (the old one was leaked,
/// or is rotated on a schedule). The old one is refused at once here and
/// within seconds on other replicas; each replica's
/// `DATA_DIR/operator-token` gets the new one (this one's at once, the
/// others' when they next check a token).
async fn new_operator_token(State(pbxs): St) -> Result<Json<Value>, ApiError> {
    let _changes = pbxs.changes.lock().await;
    let token = {
        let pbxs = pbxs.clone();
        blocking(move || pbxs.operator_token.replace().map_err(replace_refused)).await?
    };
    tracing::info!("operator token replaced");
    Ok(Json(json!({ "operator_token": token })))
}

fn replace_refused(e: super::auth::ReplaceError) -> ApiError {
    match e {
        super::auth::ReplaceError::Store(e) => e.into(),
        file @ super::auth::ReplaceError::File { .. } => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            file.to_string(),
        ),
    }
}

/// `POST /operator/tenants/NAME/admin-token`: a new admin token for the
/// administrator of a tenant, or of the host's own PBX (`default`), who
/// lost theirs or leaked it. The old one stops working (on other replicas
/// within seconds) and every administrator portal session of that PBX
/// ends; agents stay signed in. A tenant that could not be opened for
/// want of its token is served again.
async fn new_admin_token(
    State(pbxs): St,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let _changes = pbxs.changes.lock().await;
    let record = match name.as_str() {
        DEFAULT_TENANT => None,
        _ => Some(pbxs.tenants.get(&name)?),
    };
    if record
        .as_ref()
        .is_some_and(|r| r.status == TenantStatus::Removing)
    {
        return Err(being_removed(&name));
    }
    let issued = {
        let pbxs = pbxs.clone();
        let name = name.clone();
        blocking(move || -> Result<_, ApiError> {
            let served = pbxs.get(&name);
            // The token first: whoever holds the old one cannot log in
            // again between the sessions ending and the token changing.
            let (token, ended) = match &served {
                Some(pbx) => (
                    pbx.state.auth.replace_token().map_err(replace_refused)?,
                    pbx.state.auth.sessions.end_administrators(),
                ),
                None => {
                    let store = pbxs.store.tenant(&name);
                    let token = super::auth::new_tenant_token(&store)?;
                    let ended =
                        Sessions::new(&store, SessionPolicy::default()).end_administrators();
                    (token, ended)
                }
            };
            let ended = ended.map_err(|e| {
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    format!(
                        "a new admin token is in effect, but the administrator's portal sessions could not be ended ({e}); run `pbx-host tenant new-token {name}` again"
                    ),
                )
            })?;
            let opened = match (&served, &record) {
                (None, Some(record)) => {
                    pbxs.open_tenant(record).map_err(|e| {
                        ApiError::new(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            "internal",
                            format!("a new admin token is stored, but the tenant still cannot be opened: {e:#}"),
                        )
                    })?;
                    true
                }
                _ => false,
            };
            Ok((token, ended, opened))
        })
        .await
    };
    let (token, ended, opened) = issued?;
    if opened {
        pbxs.announce();
    }
    tracing::info!(tenant = %name, sessions_ended = ended, opened, "admin token replaced");
    Ok(Json(json!({
        "tenant": name,
        "admin_token": token,
        "sessions_ended": ended,
    })))
}

/// What a change to a tenant left `removing` answers.
fn being_removed(name: &str) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "conflict",
        format!("{name} is being removed; run `pbx-host tenant remove {name}` again to finish"),
    )
}

/// Runs `work` (store I/O) off the async workers.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
}

/// `DELETE /operator/tenants/NAME`.
async fn remove(State(pbxs): St, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    let _changes = pbxs.changes.lock().await;
    let record = pbxs.tenants.get(&name)?;
    // Revoke first: once the keys are gone the tokens cannot be. A plugin
    // that could not revoke has forgotten its tokens all the same and says
    // how to revoke them at the CRM: the report carries its words.
    let revoked = match pbxs.get(&name) {
        Some(pbx) => revoke_all(&pbx).await,
        None => Vec::new(),
    };
    // Every replica stops serving it before its data goes, so none writes
    // there meanwhile; a removal that fails from here is run again.
    pbxs.tenants.set_status(&name, TenantStatus::Removing)?;
    let pbx = pbxs.close_tenant(&name);
    pbxs.announce();
    let removed = {
        let pbxs = pbxs.clone();
        let name = name.clone();
        blocking(move || -> Result<Value, ApiError> {
            // Read before its records go; it was released from the files
            // in use when it was closed.
            let shas = pbx
                .as_ref()
                .map(|p| p.state.runtime.installed_files())
                .unwrap_or_default();
            let store = pbxs.store.tenant(&name);
            let namespaces = store.remove_tenant_data()?;
            pbxs.tenants.remove(&name)?;
            let files = match &pbx {
                Some(pbx) => pbx.state.runtime.drop_unused_files(&shas),
                None => Vec::new(),
            };
            Ok(json!({
                "namespaces": namespaces
                    .iter()
                    .map(|(ns, usage)| json!({"name": ns, "keys": usage.keys, "bytes": usage.bytes}))
                    .collect::<Vec<_>>(),
                "files": files,
            }))
        })
        .await?
    };
    pbxs.announce();
    tracing::info!(tenant = %name, "tenant removed");
    Ok(Json(json!({
        "removed": {
            "name": record.name,
            "public_url": record.public_url,
            "revoked": revoked,
            "namespaces": removed["namespaces"],
            "files": removed["files"],
        }
    })))
}

/// Disconnect every active plugin of `pbx` (each revokes its CRM tokens).
async fn revoke_all(pbx: &Pbx) -> Vec<Value> {
    let mut out = Vec::new();
    for id in pbx.state.runtime.plugin_ids() {
        let outcome = pbx.state.runtime.plugin(&id).disconnect().await;
        out.push(match outcome {
            // A plugin that could not revoke says so as a problem.
            Ok(status) => match status.problem {
                Some(problem) => json!({"plugin": id, "ok": false, "message": problem}),
                None => json!({"plugin": id, "ok": true, "message": "disconnected; its tokens were revoked"}),
            },
            Err(e) => json!({"plugin": id, "ok": false, "message": e.to_string()}),
        });
    }
    out
}

/// `/operator/tenants/NAME/api/REST`: tenant NAME's admin API, as its
/// administrator (a suspended tenant's too, so the operator can look in).
async fn forward(
    State(pbxs): St,
    Path((name, rest)): Path<(String, String)>,
    request: Request,
) -> Result<Response, ApiError> {
    if name != DEFAULT_TENANT {
        check_name(&name)?;
    }
    let pbx = pbxs
        .get(&name)
        .ok_or_else(|| ApiError::from(TenantError::Unknown(name.clone())))?;
    let (mut parts, body) = request.into_parts();
    let query = parts
        .uri
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    parts.uri = format!("/api/{rest}{query}")
        .parse()
        .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "invalid-input", "not a valid path"))?;
    // The tenant's handlers never see the operator's token.
    parts.headers.remove(header::AUTHORIZATION);
    parts.headers.remove(header::COOKIE);
    // Fresh extensions: this route's own path parameters must not reach
    // the tenant's routes; the peer address does.
    let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().cloned();
    parts.extensions = Default::default();
    parts.extensions.insert(OperatorActing);
    if let Some(peer) = peer {
        parts.extensions.insert(peer);
    }
    let request = Request::from_parts(parts, Body::new(body));
    Ok(pbx.serve_as_operator(request).await)
}
