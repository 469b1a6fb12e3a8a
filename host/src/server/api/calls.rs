//! The calls API: events from the PBX in, caller lookup for the PBX's caller
//! ID, click-to-call, the journal's pending deliveries and its dead letters,
//! and the call dispositions agents pick from.
//! Every route is the administrator's (the admin API's check).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::call_input::{self, direction_name, phase_name};
use crate::dialing::Origination;
use crate::dispositions::{DispositionError, Dispositions};
use crate::journal::{RetryError, TickReport};
use crate::now_ms;
use crate::server::error::ApiError;
use crate::server::state::AppState;

type St = State<Arc<AppState>>;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/calls/events", post(event))
        .route("/calls/lookup", get(lookup))
        .route("/calls/dial", post(dial))
        .route("/calls/originations", get(originations))
        .route("/calls/run-pending", post(run_pending))
        .route("/calls/dead-letters", get(dead_letters))
        .route("/calls/dead-letters/{id}/retry", post(retry_dead_letter))
        .route("/calls/dead-letters/{id}", delete(discard_dead_letter))
        .route(
            "/call-dispositions",
            get(get_dispositions).merge(put(put_dispositions)),
        )
}

fn disposition_error(e: DispositionError) -> ApiError {
    match e {
        DispositionError::Invalid(message) => {
            ApiError::new(StatusCode::BAD_REQUEST, "invalid-input", message)
                .with_field("dispositions")
        }
        DispositionError::Store(_) => ApiError::store(e.to_string()),
    }
}

/// `GET /api/call-dispositions`: the pick-list agents choose from.
async fn get_dispositions(State(st): St) -> Result<Json<Value>, ApiError> {
    let list = Dispositions::new(&st.store)
        .list()
        .map_err(disposition_error)?;
    Ok(Json(json!({ "dispositions": list })))
}

#[derive(Deserialize)]
struct DispositionsBody {
    dispositions: Option<Vec<String>>,
}

/// `PUT /api/call-dispositions {"dispositions": [...]}`: replace the list.
async fn put_dispositions(State(st): St, body: Bytes) -> Result<Json<Value>, ApiError> {
    let bad = |detail: String| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid-input",
            format!("send {{\"dispositions\": [\"Left message\", \"Sale\"]}} ({detail})"),
        )
        .with_field("dispositions")
    };
    let body: DispositionsBody = serde_json::from_slice(&body).map_err(|e| bad(e.to_string()))?;
    let names = body
        .dispositions
        .ok_or_else(|| bad("the list is missing".into()))?;
    let list = Dispositions::new(&st.store)
        .set(&names)
        .map_err(disposition_error)?;
    Ok(Json(json!({ "dispositions": list })))
}

/// `POST /api/calls/events`: check the event, hand it to every plugin.
/// 200 when every plugin took it, 202 when some call failed and the host
/// keeps the event (for another delivery, or as a dead letter when the
/// retry queue is full), 400 when the input is wrong (or
/// every plugin refused it as invalid input).
async fn event(State(st): St, body: Bytes) -> Result<Response, ApiError> {
    let event = call_input::parse_event(&body, &st.config.default_region, &st.config.time_zone)?;
    // Only a new event from the PBX is checked: what the journal delivers
    // again was valid when it came, even if its extension is gone since.
    if st.services.directory.get(&event.extension)?.is_none() {
        return Err(unknown_extension(
            StatusCode::BAD_REQUEST,
            "invalid-input",
            &event.extension,
        ));
    }
    let ends = st.recent_calls.note_event(&event);
    let before = st.services.browser.latest_id();
    let deliveries = st.journal.deliver(&event).await;
    // The pop-up a plugin opened for this call names its CRM record.
    for request in st.services.browser.since(before) {
        st.recent_calls.note_pop_up(&request);
    }
    if ends {
        st.recent_calls.keep(&event.extension).await;
    }
    let refused_as_invalid = !deliveries.is_empty()
        && deliveries
            .iter()
            .all(|d| d.kind.as_deref() == Some("invalid-input"));
    if refused_as_invalid {
        let message = deliveries
            .iter()
            .filter_map(|d| d.error.as_deref())
            .collect::<Vec<_>>()
            .join("; ");
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid-input",
            message,
        ));
    }
    let status = if deliveries
        .iter()
        .any(|d| d.queued || d.dead_letter.is_some())
    {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(json!({
            "call_id": event.call_id,
            "phase": phase_name(event.phase),
            "direction": direction_name(event.direction),
            "delivered": deliveries.iter().all(|d| d.ok),
            "plugins": deliveries,
        })),
    )
        .into_response())
}

/// The plugins a request names (`plugin`), or every active one.
fn chosen_plugins(st: &AppState, plugin: Option<String>) -> Vec<String> {
    match plugin {
        Some(p) => vec![p],
        None => st.runtime.plugin_ids(),
    }
}

#[derive(Deserialize)]
struct LookupQuery {
    number: Option<String>,
    plugin: Option<String>,
}

/// `GET /api/calls/lookup?number=...`: who is calling, for the caller ID.
/// The first plugin (by id) with a match names the caller; every plugin's
/// answer is listed.
async fn lookup(State(st): St, Query(q): Query<LookupQuery>) -> Result<Json<Value>, ApiError> {
    let number = call_input::check_number("number", q.number.as_deref().unwrap_or(""))?;
    let plugins = chosen_plugins(&st, q.plugin);
    if plugins.is_empty() {
        return Err(ApiError::no_plugin());
    }
    let mut answers = Vec::new();
    let mut first_error = None;
    let mut chosen: Option<(String, Value)> = None;
    for plugin in plugins {
        let result = st
            .runtime
            .plugin(&plugin)
            .lookup_caller(&number, &st.config.default_region)
            .await
            .map_err(ApiError::from);
        match result {
            Ok(caller) => {
                let caller = json!(caller);
                let better = chosen.as_ref().is_none_or(|(_, c)| c["best"].is_null())
                    && (!caller["best"].is_null() || chosen.is_none());
                answers.push(json!({"plugin": plugin, "ok": true, "caller": caller}));
                if better {
                    chosen = Some((plugin, caller));
                }
            }
            Err(e) => {
                tracing::warn!(%plugin, "caller lookup failed: {}", e.message());
                answers.push(
                    json!({"plugin": plugin, "ok": false, "kind": e.kind(), "error": e.message()}),
                );
                first_error.get_or_insert(e);
            }
        }
    }
    let Some((plugin, caller)) = chosen else {
        return Err(first_error.unwrap_or_else(ApiError::no_plugin));
    };
    Ok(Json(json!({
        "number": caller["number"],
        "name": caller["best"]["name"],
        "best": caller["best"],
        "others": caller["others"],
        "plugin": plugin,
        "plugins": answers,
    })))
}

#[derive(Deserialize)]
struct DialBody {
    extension: Option<String>,
    number: Option<String>,
    plugin: Option<String>,
}

/// `POST /api/calls/dial {extension, number}`: the plugin authorizes the
/// call (the extension's user, the number in E.164), the host originates it.
async fn dial(State(st): St, body: Bytes) -> Result<Response, ApiError> {
    let body: DialBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid-input",
            format!(
                "the body must be JSON such as {{\"extension\": \"1001\", \"number\": \"+14155550100\"}} ({e})"
            ),
        )
        .with_field("body")
    })?;
    let extension =
        call_input::check_extension("extension", body.extension.as_deref().unwrap_or(""))?;
    let origination = originate(&st, &extension, body.number.as_deref(), body.plugin).await?;
    Ok((StatusCode::CREATED, Json(json!(origination))).into_response())
}

/// Click-to-call from `extension` (already checked, and the caller may use
/// it): the number is checked, a plugin authorizes, the host originates.
/// The admin API and the agent page both dial through here.
pub(in crate::server) async fn originate(
    st: &AppState,
    extension: &str,
    number: Option<&str>,
    plugin: Option<String>,
) -> Result<Origination, ApiError> {
    let requested = call_input::check_number("number", number.unwrap_or(""))?;
    if st.services.directory.get(extension)?.is_none() {
        return Err(unknown_extension(
            StatusCode::NOT_FOUND,
            "not-found",
            extension,
        ));
    }
    let mut first_error = None;
    for plugin in chosen_plugins(st, plugin) {
        let result = st
            .runtime
            .plugin(&plugin)
            .authorize_dial(extension, &requested, &st.config.default_region)
            .await;
        match result {
            Ok(e164) => {
                let origination = st.originations.record(Origination {
                    id: 0,
                    extension: extension.to_string(),
                    number: e164,
                    requested: requested.clone(),
                    plugin: plugin.clone(),
                    at_ms: now_ms(),
                });
                tracing::info!(
                    %plugin, extension = %origination.extension, number = %origination.number,
                    "click-to-call: originating"
                );
                return Ok(origination);
            }
            Err(e) => {
                tracing::info!(%plugin, %extension, "click-to-call refused: {e}");
                first_error.get_or_insert(ApiError::from(e));
            }
        }
    }
    Err(first_error.unwrap_or_else(ApiError::no_plugin))
}

/// An extension the PBX directory does not have, in the same words for
/// call events (400) and click-to-call (404).
fn unknown_extension(status: StatusCode, kind: &'static str, extension: &str) -> ApiError {
    ApiError::new(
        status,
        kind,
        format!(
            "extension {extension} does not exist; add it (`pbx-host extension add {extension} --name NAME`, or Extensions in the portal) or use one that `pbx-host extension list` shows"
        ),
    )
    .with_field("extension")
}

async fn originations(State(st): St) -> Json<Value> {
    Json(json!({ "originations": st.originations.list() }))
}

/// `POST /api/calls/run-pending`: a tick now (every queued event, due or
/// not), answering the counts.
async fn run_pending(State(st): St) -> Json<TickReport> {
    Json(st.journal.tick(true).await)
}

/// `GET /api/calls/dead-letters`: the call events the host gave up
/// delivering, oldest first, and the bounds.
async fn dead_letters(State(st): St) -> Result<Json<Value>, ApiError> {
    let letters = st.journal.dead_letters().map_err(store_error)?;
    let limits = st.config.journal_limits;
    Ok(Json(json!({
        "dead_letters": letters,
        "limits": {
            "queue_max": limits.queue_max,
            "max_attempts": limits.max_attempts,
            "max_age_s": limits.max_age.as_secs(),
            "dead_letters_max": limits.dead_letters_max,
        },
    })))
}

/// `POST /api/calls/dead-letters/{id}/retry`: deliver it again, once. 200
/// with the delivery when the plugin answered (the dead letter is gone),
/// 404 for an unknown id, 409 when its plugin is not installed, 502 when
/// the call failed again (the dead letter stays).
async fn retry_dead_letter(State(st): St, Path(id): Path<String>) -> Result<Response, ApiError> {
    match st.journal.retry_dead_letter(&id).await {
        Ok(delivery) => Ok(Json(json!({ "id": id, "delivery": delivery })).into_response()),
        Err(e) => {
            let (status, kind) = match &e {
                RetryError::NotFound(_) => (StatusCode::NOT_FOUND, "not-found"),
                RetryError::NotInstalled(_) => (StatusCode::CONFLICT, "not-installed"),
                RetryError::FailedAgain(_) => (StatusCode::BAD_GATEWAY, "failed-again"),
                RetryError::Store(_) => (StatusCode::SERVICE_UNAVAILABLE, "store"),
            };
            Err(ApiError::new(status, kind, e.to_string()))
        }
    }
}

/// `DELETE /api/calls/dead-letters/{id}`: forget it. 204, or 404.
async fn discard_dead_letter(State(st): St, Path(id): Path<String>) -> Result<Response, ApiError> {
    if st.journal.discard_dead_letter(&id).map_err(store_error)? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not-found",
            format!("no dead letter has the id {id:?}; `pbx-host call dead-letters` lists them"),
        ))
    }
}

fn store_error(e: crate::store::KvError) -> ApiError {
    ApiError::store(format!("the dead letters cannot be read or written: {e}"))
}
