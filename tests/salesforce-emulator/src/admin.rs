//! `/__admin/...`: inspection and control over HTTP (a path Salesforce
//! never uses). No authentication: the emulator is a loopback test tool.

use std::sync::Arc;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::config::ConnectedApp;
use crate::control::{AppUpdate, FaultRequest, Faults, NewUser};
use crate::http::{Req, Resp};
use crate::state::Shared;

fn body<T: DeserializeOwned>(req: &Req) -> Result<T, Resp> {
    let bytes: &[u8] = if req.body.is_empty() {
        b"{}"
    } else {
        &req.body
    };
    serde_json::from_slice(bytes)
        .map_err(|e| Resp::json(400, &json!({"error": format!("invalid JSON body: {e}")})))
}

/// A `POST /__admin/org` body: the org options to change.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct OrgOptions {
    /// Person Accounts on or off.
    person_accounts: Option<bool>,
}

fn faults(shared: &Arc<Shared>) -> Faults {
    Faults {
        shared: shared.clone(),
    }
}

/// Routes `/__admin/...`.
pub fn handle(shared: &Arc<Shared>, req: &Req) -> Resp {
    let segs: Vec<&str> = req
        .path
        .split('/')
        .filter(|s| !s.is_empty())
        .skip(1)
        .collect();
    let m = req.method.as_str();
    let result = match (m, segs.as_slice()) {
        ("GET", [] | ["state"]) => Ok(Resp::json(200, &shared.summary())),
        ("GET", ["tasks"]) => Ok(Resp::json(200, &shared.records("Task"))),
        ("GET", ["contacts"]) => Ok(Resp::json(200, &shared.records("Contact"))),
        ("GET", ["leads"]) => Ok(Resp::json(200, &shared.records("Lead"))),
        ("GET", ["accounts"]) => Ok(Resp::json(200, &shared.records("Account"))),
        ("GET", ["cases"]) => Ok(Resp::json(200, &shared.records("Case"))),
        ("GET", ["users"]) => Ok(Resp::json(200, &shared.records("User"))),
        ("GET", ["org"]) => Ok(Resp::json(200, &shared.org_options())),
        ("POST" | "PATCH", ["org"]) => body::<OrgOptions>(req).map(|o| {
            if let Some(on) = o.person_accounts {
                shared.set_person_accounts(on);
            }
            Resp::json(200, &shared.org_options())
        }),
        ("GET", ["token-stats"]) => Ok(Resp::json(200, &shared.token_stats())),
        ("GET", ["requests"]) => Ok(Resp::json(200, &shared.request_counts())),
        ("GET", ["faults"]) => Ok(Resp::json(200, &faults(shared).status())),
        ("POST", ["faults"]) => body::<FaultRequest>(req).map(|f| {
            let h = faults(shared);
            h.apply(&f);
            Resp::json(200, &h.status())
        }),
        ("DELETE", ["faults"]) | ("POST", ["faults", "clear"]) => {
            let h = faults(shared);
            h.clear();
            Ok(Resp::json(200, &h.status()))
        }
        ("POST", ["users"]) => body::<NewUser>(req).map(|u| match shared.add_user(&u) {
            Ok(id) => Resp::json(201, &json!({"id": id})),
            Err(e) => Resp::json(400, &json!({"error": e.to_string()})),
        }),
        ("POST", ["users", id, action @ ("deactivate" | "activate")]) => {
            Ok(match shared.set_user_active(id, *action == "activate") {
                Ok(()) => Resp::json(200, &json!({"id": id, "active": *action == "activate"})),
                Err(e) => Resp::json(404, &json!({"error": e.to_string()})),
            })
        }
        ("PATCH", ["users", id]) => {
            body::<serde_json::Map<String, Value>>(req).map(|f| match shared.update_user(id, &f) {
                Ok(()) => Resp::json(200, &json!({"id": id})),
                Err(e @ crate::error::EmulatorError::UnknownUser(_)) => {
                    Resp::json(404, &json!({"error": e.to_string()}))
                }
                Err(e) => Resp::json(400, &json!({"error": e.to_string()})),
            })
        }
        ("POST", ["apps"]) => body::<ConnectedApp>(req).map(|app| {
            if app.consumer_key.is_empty() {
                return Resp::json(400, &json!({"error": "consumer_key is required"}));
            }
            shared.add_app(app.clone());
            Resp::json(201, &app)
        }),
        ("PATCH" | "POST", ["apps", key]) => {
            body::<AppUpdate>(req).map(|u| match shared.update_app(key, &u) {
                Ok(app) => Resp::json(200, &app),
                Err(e) => Resp::json(404, &json!({"error": e.to_string()})),
            })
        }
        ("POST", ["tokens"]) => body::<Value>(req).map(|v| {
            let key = v["consumer_key"].as_str().unwrap_or("");
            let user = v["username"].as_str().unwrap_or("admin@example.org");
            match shared.issue_token(key, user) {
                Ok(t) => Resp::json(200, &t),
                Err(e) => Resp::json(400, &json!({"error": e.to_string()})),
            }
        }),
        ("POST", ["records", object]) => body::<serde_json::Map<String, Value>>(req).map(|f| {
            match shared.insert_record(object, &f) {
                Ok(id) => Resp::json(201, &json!({"id": id})),
                Err(e) => Resp::json(400, &json!({"error": e.to_string()})),
            }
        }),
        _ => Ok(Resp::json(
            404,
            &json!({"error": "unknown admin endpoint", "endpoints": ENDPOINTS}),
        )),
    };
    result.unwrap_or_else(|e| e)
}

const ENDPOINTS: &[&str] = &[
    "GET /__admin/state",
    "GET /__admin/tasks|contacts|leads|accounts|cases|users",
    "GET|POST /__admin/org (person_accounts)",
    "GET /__admin/token-stats",
    "GET /__admin/requests",
    "GET|POST|DELETE /__admin/faults",
    "POST /__admin/users",
    "POST /__admin/users/{id}/deactivate|activate",
    "PATCH /__admin/users/{id}",
    "POST /__admin/apps",
    "PATCH /__admin/apps/{consumer_key}",
    "POST /__admin/tokens",
    "POST /__admin/records/{Object}",
];
