//! A fake HubSpot for native tests, behind the fake host's HTTP side: the
//! OAuth v1 endpoints, owners with paging, CRM objects (contacts,
//! companies, calls) with create, read, patch and search (EQ, IN,
//! CONTAINS_TOKEN), and scripted failures: HTTP errors, 429 with
//! Retry-After, answers lost after the work was done, search lag.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use super::{FakeHost, lock};
use crate::bindings::pbx::crm::http_fetch::{self, Header, Method, Request, Response};

pub const CLIENT: &str = "client-1";
pub const SECRET: &str = "very-secret-value";
pub const HUB_ID: u64 = 4242;
pub const ADMIN_USER_ID: u64 = 9001;

/// One CRM record.
#[derive(Debug, Clone)]
pub struct Record {
    pub id: String,
    pub props: BTreeMap<String, String>,
    /// (association type id, target id) from the create body.
    pub associations: Vec<(u64, String)>,
    /// Whether search sees it yet (search lag).
    pub searchable: bool,
}

/// A scripted failure for the next requests whose path contains `path`.
struct Fault {
    path: String,
    status: u16,
    retry_after: Option<u64>,
    /// Do the work, then lose the answer (a time-out).
    lose_answer: bool,
    times: u32,
}

#[derive(Default)]
struct State {
    codes: BTreeMap<String, (String, u64)>,
    access: BTreeMap<String, u64>,
    refresh: BTreeMap<String, u64>,
    issued: u64,
    owners: Vec<Value>,
    objects: BTreeMap<String, Vec<Record>>,
    next_id: u64,
    faults: Vec<Fault>,
    search_lag: bool,
}

#[derive(Default)]
pub struct FakeHubSpot {
    state: Mutex<State>,
}

fn response(status: u16, body: Value) -> Response {
    Response {
        status,
        headers: vec![Header {
            name: "content-type".into(),
            value: "application/json".into(),
        }],
        body: if body.is_null() {
            Vec::new()
        } else {
            body.to_string().into_bytes()
        },
    }
}

fn error(status: u16, category: &str, message: &str) -> Response {
    response(
        status,
        json!({"status": "error", "message": message, "correlationId": "c-1", "category": category}),
    )
}

fn tokens(text: &str) -> Vec<String> {
    text.to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

impl FakeHubSpot {
    /// A fake HubSpot answering `host`'s fetches.
    pub fn install(host: &FakeHost) -> Arc<Self> {
        let hs = Arc::new(Self::default());
        let served = Arc::clone(&hs);
        host.on_fetch(move |r| served.handle(r));
        hs
    }

    /// A code the install page would give `redirect_uri` for `user_id`.
    pub fn grant_code(&self, redirect_uri: &str, user_id: u64) -> String {
        let mut s = lock(&self.state);
        s.issued += 1;
        let code = format!("code-{}", s.issued);
        s.codes.insert(code.clone(), (redirect_uri.into(), user_id));
        code
    }

    pub fn add_owner(&self, id: &str, email: &str, first: &str, user_id: u64) {
        lock(&self.state).owners.push(json!({
            "id": id, "email": email, "firstName": first, "lastName": "Tester",
            "type": "PERSON", "userId": user_id, "archived": false,
        }));
    }

    /// Archive every owner (they left the account).
    pub fn archive_owners(&self) {
        for o in &mut lock(&self.state).owners {
            o["archived"] = Value::Bool(true);
        }
    }

    /// A record of `kind` ("contacts", "companies", "calls"); its id.
    pub fn add(&self, kind: &str, props: &[(&str, &str)]) -> String {
        let mut s = lock(&self.state);
        s.next_id += 1;
        let id = (500 + s.next_id).to_string();
        s.objects.entry(kind.into()).or_default().push(Record {
            id: id.clone(),
            props: props
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            associations: Vec::new(),
            searchable: true,
        });
        id
    }

    pub fn records(&self, kind: &str) -> Vec<Record> {
        lock(&self.state)
            .objects
            .get(kind)
            .cloned()
            .unwrap_or_default()
    }

    /// Make every access token unknown (as if expired or revoked).
    pub fn drop_access_tokens(&self) {
        lock(&self.state).access.clear();
    }

    /// Forget every refresh token (the app was uninstalled).
    pub fn forget_refresh_tokens(&self) {
        lock(&self.state).refresh.clear();
    }

    pub fn refresh_tokens(&self) -> usize {
        lock(&self.state).refresh.len()
    }

    /// The next `times` requests whose path contains `path` answer `status`.
    pub fn fail(&self, path: &str, status: u16, times: u32, retry_after: Option<u64>) {
        lock(&self.state).faults.push(Fault {
            path: path.into(),
            status,
            retry_after,
            lose_answer: false,
            times,
        });
    }

    /// The next request whose path contains `path` is done, but its answer
    /// is lost (the plugin sees a time-out).
    pub fn lose_answer(&self, path: &str) {
        lock(&self.state).faults.push(Fault {
            path: path.into(),
            status: 0,
            retry_after: None,
            lose_answer: true,
            times: 1,
        });
    }

    /// New records stay out of search until `settle`.
    pub fn set_search_lag(&self, on: bool) {
        lock(&self.state).search_lag = on;
    }

    pub fn settle(&self) {
        for list in lock(&self.state).objects.values_mut() {
            for r in list {
                r.searchable = true;
            }
        }
    }

    fn handle(&self, r: &Request) -> Result<Response, http_fetch::Error> {
        let url = url::Url::parse(&r.url).map_err(|e| http_fetch::Error::Invalid(e.to_string()))?;
        let path = url.path().to_string();
        let query: BTreeMap<String, String> = url.query_pairs().into_owned().collect();
        let body = r.body.clone().unwrap_or_default();
        let mut lose = false;
        {
            let mut s = lock(&self.state);
            if let Some(f) = s
                .faults
                .iter_mut()
                .find(|f| f.times > 0 && path.contains(&f.path))
            {
                f.times -= 1;
                if f.lose_answer {
                    lose = true;
                } else {
                    let mut resp = error(f.status, "RATE_LIMITS", "scripted failure");
                    if let Some(secs) = f.retry_after {
                        resp.headers.push(Header {
                            name: "Retry-After".into(),
                            value: secs.to_string(),
                        });
                    }
                    return Ok(resp);
                }
            }
        }
        let answer = self.route(r, &path, &query, &body);
        if lose {
            return Err(http_fetch::Error::Timeout);
        }
        Ok(answer)
    }

    fn route(
        &self,
        r: &Request,
        path: &str,
        query: &BTreeMap<String, String>,
        body: &[u8],
    ) -> Response {
        let mut s = lock(&self.state);
        if path == "/oauth/v1/token" && r.method == Method::Post {
            let form: BTreeMap<String, String> =
                url::form_urlencoded::parse(body).into_owned().collect();
            let field = |k: &str| form.get(k).cloned().unwrap_or_default();
            if field("client_id") != CLIENT || field("client_secret") != SECRET {
                return response(
                    400,
                    json!({"status": "BAD_CLIENT_ID", "message": "bad client"}),
                );
            }
            let user = match field("grant_type").as_str() {
                "authorization_code" => match s.codes.remove(&field("code")) {
                    Some((redirect, user)) if redirect == field("redirect_uri") => user,
                    _ => {
                        return response(
                            400,
                            json!({"status": "BAD_AUTH_CODE", "message": "missing or unknown auth code"}),
                        );
                    }
                },
                "refresh_token" => match s.refresh.get(&field("refresh_token")) {
                    Some(user) => *user,
                    None => {
                        return response(
                            400,
                            json!({"status": "BAD_REFRESH_TOKEN", "message": "missing or invalid refresh token"}),
                        );
                    }
                },
                _ => return response(400, json!({"status": "BAD_GRANT_TYPE", "message": "?"})),
            };
            s.issued += 1;
            let access = format!("access-{}", s.issued);
            s.access.insert(access.clone(), user);
            let refresh = if field("grant_type") == "refresh_token" {
                field("refresh_token")
            } else {
                let t = format!("refresh-{}", s.issued);
                s.refresh.insert(t.clone(), user);
                t
            };
            return response(
                200,
                json!({"token_type": "bearer", "access_token": access, "refresh_token": refresh, "expires_in": 1800}),
            );
        }
        if let Some(token) = path.strip_prefix("/oauth/v1/access-tokens/") {
            return match s.access.get(token) {
                Some(user) => response(
                    200,
                    json!({"token": token, "user": format!("user{user}@acme.test"), "hub_domain": "acme.test",
                           "hub_id": HUB_ID, "user_id": user, "app_id": 1, "expires_in": 1800, "token_type": "access",
                           "scopes": ["crm.objects.contacts.read"]}),
                ),
                None => error(404, "OBJECT_NOT_FOUND", "unknown token"),
            };
        }
        if let Some(token) = path.strip_prefix("/oauth/v1/refresh-tokens/") {
            s.refresh.remove(token);
            return response(204, Value::Null);
        }
        let bearer = r
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("authorization"))
            .and_then(|h| h.value.strip_prefix("Bearer "))
            .unwrap_or("");
        if !s.access.contains_key(bearer) {
            return error(
                401,
                "EXPIRED_AUTHENTICATION",
                "The OAuth token used to make this call expired",
            );
        }
        if path == "/crm/v3/owners" || path == "/crm/v3/owners/" {
            let limit: usize = query
                .get("limit")
                .and_then(|l| l.parse().ok())
                .unwrap_or(100);
            let from: usize = query.get("after").and_then(|a| a.parse().ok()).unwrap_or(0);
            let archived = query.get("archived").map(String::as_str) == Some("true");
            let listed: Vec<&Value> = s
                .owners
                .iter()
                .filter(|o| o["archived"].as_bool() == Some(archived))
                .collect();
            let page: Vec<Value> = listed
                .iter()
                .skip(from)
                .take(limit)
                .map(|o| (*o).clone())
                .collect();
            let mut answer = json!({"results": page});
            if from + limit < listed.len() {
                answer["paging"] = json!({"next": {"after": (from + limit).to_string()}});
            }
            return response(200, answer);
        }
        if let Some(id) = path.strip_prefix("/crm/v3/owners/") {
            let by_user = query.get("idProperty").map(String::as_str) == Some("userId");
            let archived = query.get("archived").map(String::as_str) == Some("true");
            let found = s.owners.iter().find(|o| {
                let key = if by_user {
                    o["userId"].to_string()
                } else {
                    o["id"].as_str().unwrap_or("").to_string()
                };
                key == id && o["archived"].as_bool() == Some(archived)
            });
            return match found {
                Some(o) => response(200, o.clone()),
                None => error(404, "OBJECT_NOT_FOUND", "no such owner"),
            };
        }
        let Some(rest) = path.strip_prefix("/crm/v3/objects/") else {
            return error(404, "OBJECT_NOT_FOUND", "no such path");
        };
        let parts: Vec<&str> = rest.split('/').collect();
        let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        match (r.method, parts.as_slice()) {
            (Method::Post, [kind, "search"]) => {
                let lag = s.search_lag;
                let list = s.objects.get(*kind).cloned().unwrap_or_default();
                let groups = v["filterGroups"].as_array().cloned().unwrap_or_default();
                let results: Vec<Value> = list
                    .iter()
                    .filter(|rec| rec.searchable || !lag)
                    .filter(|rec| {
                        groups.iter().any(|g| {
                            g["filters"].as_array().is_some_and(|fs| {
                                fs.iter().all(|f| {
                                    let have =
                                        rec.props.get(f["propertyName"].as_str().unwrap_or(""));
                                    let Some(have) = have else { return false };
                                    match f["operator"].as_str() {
                                        Some("EQ") => f["value"].as_str() == Some(have.as_str()),
                                        Some("IN") => f["values"].as_array().is_some_and(|vs| {
                                            vs.iter().any(|x| x.as_str() == Some(have.as_str()))
                                        }),
                                        Some("CONTAINS_TOKEN") => {
                                            let want = tokens(f["value"].as_str().unwrap_or(""));
                                            let got = tokens(have);
                                            !want.is_empty() && want.iter().all(|w| got.contains(w))
                                        }
                                        _ => false,
                                    }
                                })
                            })
                        })
                    })
                    .map(|rec| json!({"id": rec.id, "properties": rec.props}))
                    .collect();
                response(200, json!({"total": results.len(), "results": results}))
            }
            (Method::Post, [kind]) => {
                s.next_id += 1;
                let id = (500 + s.next_id).to_string();
                let props: BTreeMap<String, String> = v["properties"]
                    .as_object()
                    .map(|o| {
                        o.iter()
                            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                            .collect()
                    })
                    .unwrap_or_default();
                let associations = v["associations"]
                    .as_array()
                    .map(|list| {
                        list.iter()
                            .map(|a| {
                                (
                                    a["types"][0]["associationTypeId"].as_u64().unwrap_or(0),
                                    a["to"]["id"].as_str().unwrap_or("").to_string(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let searchable = !s.search_lag;
                s.objects.entry(kind.to_string()).or_default().push(Record {
                    id: id.clone(),
                    props: props.clone(),
                    associations,
                    searchable,
                });
                response(201, json!({"id": id, "properties": props}))
            }
            (Method::Patch, [kind, id]) => {
                let Some(rec) = s
                    .objects
                    .get_mut(*kind)
                    .and_then(|l| l.iter_mut().find(|r| r.id == *id))
                else {
                    return error(404, "OBJECT_NOT_FOUND", "no such record");
                };
                if let Some(o) = v["properties"].as_object() {
                    for (k, val) in o {
                        rec.props
                            .insert(k.clone(), val.as_str().unwrap_or("").to_string());
                    }
                }
                response(200, json!({"id": rec.id, "properties": rec.props}))
            }
            (Method::Get, [kind, id]) => match s
                .objects
                .get(*kind)
                .and_then(|l| l.iter().find(|r| r.id == *id))
            {
                Some(rec) => response(200, json!({"id": rec.id, "properties": rec.props})),
                None => error(404, "OBJECT_NOT_FOUND", "no such record"),
            },
            _ => error(404, "OBJECT_NOT_FOUND", "no such path"),
        }
    }
}
