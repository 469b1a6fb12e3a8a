//! The REST API under `/services/data/`: versions, query/queryAll with
//! cursors, search, sobjects (create, read, update, describe), composite,
//! limits. Errors are Salesforce's JSON arrays, never HTML.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Instant;

use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};
use serde_json::{Map, Value, json};

use crate::error::{ApiError, RestError};
use crate::http::{Req, Resp};
use crate::ids;
use crate::oauth;
use crate::schema::ObjectSchema;
use crate::soql::{self, Shape};
use crate::sosl;
use crate::state::{
    CURSOR_IDLE, Cursor, MAX_CURSORS, Session, Shared, lock, read, take_one, write,
};
use crate::store::{Record, Table, WriteCtx};
use crate::time;

/// The newest API version.
pub const CURRENT_VERSION: &str = "67.0";
const OLDEST_MAJOR: u32 = 31;
const NEWEST_MAJOR: u32 = 67;
/// Default and bounds of a query batch (`Sforce-Query-Options: batchSize`).
pub const DEFAULT_BATCH: usize = 2000;
const MIN_BATCH: usize = 200;

fn release_label(major: u32) -> String {
    let k = major as i64 - 60;
    let (season, year) = match k.rem_euclid(3) {
        0 => ("Spring", 24 + k.div_euclid(3)),
        1 => ("Summer", 24 + k.div_euclid(3)),
        _ => ("Winter", 25 + k.div_euclid(3)),
    };
    format!("{season} '{year:02}")
}

/// `GET /services/data/`: every supported version.
pub fn versions() -> Resp {
    let list: Vec<Value> = (OLDEST_MAJOR..=NEWEST_MAJOR)
        .map(|m| json!({"label": release_label(m), "url": format!("/services/data/v{m}.0"), "version": format!("{m}.0")}))
        .collect();
    Resp::json(200, &list)
}

/// Parses `vNN.N` into `NN.N` when the version is supported.
pub fn parse_version(seg: &str) -> Option<String> {
    let v = seg.strip_prefix('v')?;
    let (major, minor) = v.split_once('.')?;
    let major: u32 = major.parse().ok()?;
    (minor == "0" && (OLDEST_MAJOR..=NEWEST_MAJOR).contains(&major)).then(|| v.to_string())
}

/// Serializes one record with the chosen fields, `attributes` first.
struct RecSer<'a> {
    schema: &'a ObjectSchema,
    rec: &'a Record,
    fields: &'a [usize],
    version: &'a str,
}

struct AttrSer<'a> {
    name: &'a str,
    id: &'a str,
    version: &'a str,
}

impl Serialize for AttrSer<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("type", self.name)?;
        m.serialize_entry(
            "url",
            &format_args!(
                "/services/data/v{}/sobjects/{}/{}",
                self.version, self.name, self.id
            ),
        )?;
        m.end()
    }
}

impl Serialize for RecSer<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.fields.len() + 1))?;
        m.serialize_entry(
            "attributes",
            &AttrSer {
                name: self.schema.name,
                id: self.rec.id(),
                version: self.version,
            },
        )?;
        for &i in self.fields {
            m.serialize_entry(self.schema.fields[i].name, self.rec.get(i))?;
        }
        m.end()
    }
}

struct RowsSer<'a> {
    table: &'a Table,
    rows: &'a [u32],
    fields: &'a [usize],
    version: &'a str,
}

impl Serialize for RowsSer<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.rows.len()))?;
        for &r in self.rows {
            if let Some(rec) = self.table.records.get(r as usize) {
                seq.serialize_element(&RecSer {
                    schema: self.table.schema,
                    rec,
                    fields: self.fields,
                    version: self.version,
                })?;
            }
        }
        seq.end()
    }
}

struct PageSer<'a> {
    total: usize,
    next: Option<&'a str>,
    rows: RowsSer<'a>,
}

impl Serialize for PageSer<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("totalSize", &self.total)?;
        m.serialize_entry("done", &self.next.is_none())?;
        if let Some(n) = self.next {
            m.serialize_entry("nextRecordsUrl", n)?;
        }
        m.serialize_entry("records", &self.rows)?;
        m.end()
    }
}

fn batch_size(req: &Req) -> Option<usize> {
    let h = req.header("sforce-query-options")?;
    h.split(',').find_map(|kv| {
        let (k, v) = kv.trim().split_once('=')?;
        if !k.trim().eq_ignore_ascii_case("batchSize") {
            return None;
        }
        let n: usize = v.trim().parse().ok()?;
        Some(n.clamp(MIN_BATCH, DEFAULT_BATCH))
    })
}

fn page(
    table: &Table,
    rows: &[u32],
    fields: &[usize],
    total: usize,
    next: Option<&str>,
    version: &str,
) -> Resp {
    let mut body = Vec::with_capacity(rows.len() * 200 + 128);
    let ser = PageSer {
        total,
        next,
        rows: RowsSer {
            table,
            rows,
            fields,
            version,
        },
    };
    match serde_json::to_writer(&mut body, &ser) {
        Ok(()) => Resp::raw_json(200, body),
        Err(e) => RestError::new(500, "UNKNOWN_EXCEPTION", e.to_string()).into(),
    }
}

fn query(shared: &Shared, req: &Req, version: &str) -> Resp {
    let Some(q) = req.query_param("q").filter(|q| !q.trim().is_empty()) else {
        return RestError::new(400, "MALFORMED_QUERY", "A query string has to be specified").into();
    };
    let org = read(&shared.org);
    let compiled = match soql::compile(&q, org.schemas()) {
        Ok(c) => c,
        Err(e) => return RestError::bad_request(vec![e]).into(),
    };
    let Some(table) = org.table(compiled.schema.name) else {
        return RestError::bad_request(vec![soql::invalid_type(compiled.schema.name)]).into();
    };
    let rows = compiled.run(table);
    let fields = match compiled.shape {
        Shape::Records(f) => f,
        Shape::Count => {
            return Resp::json(
                200,
                &json!({"totalSize": rows.len(), "done": true, "records": []}),
            );
        }
        Shape::CountField => {
            return Resp::json(
                200,
                &json!({"totalSize": 1, "done": true, "records": [{"attributes": {"type": "AggregateResult"}, "expr0": rows.len()}]}),
            );
        }
    };
    let batch = batch_size(req).unwrap_or(DEFAULT_BATCH);
    if rows.len() <= batch {
        return page(table, &rows, &fields, rows.len(), None, version);
    }
    let mut cursors = lock(&shared.cursors);
    cursors
        .map
        .retain(|_, c| c.last_used.elapsed() < CURSOR_IDLE);
    if cursors.map.len() >= MAX_CURSORS
        && let Some(oldest) = cursors
            .map
            .iter()
            .min_by_key(|(_, c)| c.last_used)
            .map(|(k, _)| k.clone())
    {
        cursors.map.remove(&oldest);
    }
    cursors.next += 1;
    let id = ids::make_id(ids::prefix::QUERY_LOCATOR, cursors.next);
    let next = format!("/services/data/v{version}/query/{id}-{batch}");
    let resp = page(
        table,
        &rows[..batch],
        &fields,
        rows.len(),
        Some(&next),
        version,
    );
    cursors.map.insert(
        id,
        Cursor {
            schema: compiled.schema,
            fields,
            rows,
            batch,
            last_used: Instant::now(),
        },
    );
    resp
}

fn query_more(shared: &Shared, req: &Req, version: &str, locator: &str) -> Resp {
    let invalid = || RestError::new(400, "INVALID_QUERY_LOCATOR", "invalid query locator").into();
    let Some((id, offset)) = locator.rsplit_once('-') else {
        return invalid();
    };
    let Ok(offset) = offset.parse::<usize>() else {
        return invalid();
    };
    let org = read(&shared.org);
    let mut cursors = lock(&shared.cursors);
    let Some(c) = cursors
        .map
        .get_mut(id)
        .filter(|c| c.last_used.elapsed() < CURSOR_IDLE)
    else {
        return invalid();
    };
    c.last_used = Instant::now();
    if offset > c.rows.len() {
        return invalid();
    }
    let batch = batch_size(req).unwrap_or(c.batch);
    let end = (offset + batch).min(c.rows.len());
    let next = (end < c.rows.len()).then(|| format!("/services/data/v{version}/query/{id}-{end}"));
    let Some(table) = org.table(c.schema.name) else {
        return invalid();
    };
    page(
        table,
        &c.rows[offset..end],
        &c.fields,
        c.rows.len(),
        next.as_deref(),
        version,
    )
}

fn search(shared: &Shared, req: &Req, version: &str) -> Resp {
    let Some(q) = req.query_param("q").filter(|q| !q.trim().is_empty()) else {
        return RestError::new(
            400,
            "MALFORMED_SEARCH",
            "No search term found. The search term must be enclosed in braces.",
        )
        .into();
    };
    let parsed = match sosl::parse(&q) {
        Ok(s) => s,
        Err(e) => return RestError::bad_request(vec![e]).into(),
    };
    let org = read(&shared.org);
    let hits = match sosl::run(&parsed, &org, Instant::now()) {
        Ok(h) => h,
        Err(e) => return RestError::bad_request(vec![e]).into(),
    };
    struct AllHits<'a>(&'a [sosl::Hits<'a>], &'a str);
    impl Serialize for AllHits<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut seq = s.serialize_seq(None)?;
            for h in self.0 {
                for &r in &h.rows {
                    if let Some(rec) = h.table.records.get(r as usize) {
                        seq.serialize_element(&RecSer {
                            schema: h.table.schema,
                            rec,
                            fields: &h.fields,
                            version: self.1,
                        })?;
                    }
                }
            }
            seq.end()
        }
    }
    let mut body = Vec::new();
    let mut m = serde_json::Serializer::new(&mut body);
    let res = (|| {
        let mut map = m.serialize_map(Some(1))?;
        map.serialize_entry("searchRecords", &AllHits(&hits, version))?;
        SerializeMap::end(map)
    })();
    match res {
        Ok(()) => Resp::raw_json(200, body),
        Err(e) => RestError::new(500, "UNKNOWN_EXCEPTION", e.to_string()).into(),
    }
}

fn json_body(req: &Req) -> Result<Map<String, Value>, RestError> {
    let v: Value = serde_json::from_slice(&req.body).map_err(|e| {
        RestError::new(
            400,
            "JSON_PARSER_ERROR",
            format!("Unexpected character: {e}"),
        )
    })?;
    match v {
        Value::Object(m) => Ok(m),
        other => Err(RestError::new(
            400,
            "JSON_PARSER_ERROR",
            format!(
                "Cannot deserialize instance of SObject from {} value or request may be missing a required field",
                if other.is_array() {
                    "START_ARRAY"
                } else {
                    "VALUE_STRING"
                }
            ),
        )),
    }
}

fn method_not_allowed(method: &str, allowed: &str) -> Resp {
    RestError::new(
        405,
        "METHOD_NOT_ALLOWED",
        format!("HTTP Method '{method}' not allowed. Allowed are {allowed}"),
    )
    .into()
}

fn write_ctx(shared: &Shared, session: &Session) -> WriteCtx {
    let lag = shared.search_lag();
    WriteCtx {
        user_id: session.user_id.clone(),
        now_ms: time::now_ms(),
        system: false,
        searchable_at: (!lag.is_zero()).then(|| Instant::now() + lag),
    }
}

fn sobjects(shared: &Shared, session: &Session, req: &Req, version: &str, segs: &[&str]) -> Resp {
    let method = req.method.as_str();
    let Some(&object) = segs.first() else {
        if method != "GET" {
            return method_not_allowed(method, "GET,HEAD");
        }
        let schemas = read(&shared.org).schemas();
        let list: Vec<Value> = schemas.all().iter().map(|s| s.summary(version)).collect();
        return Resp::json(
            200,
            &json!({"encoding": "UTF-8", "maxBatchSize": 200, "sobjects": list}),
        );
    };
    let schemas = read(&shared.org).schemas();
    let Some(schema) = schemas.by_name(object) else {
        return RestError::not_found().into();
    };
    match (segs.get(1).copied(), method) {
        (None, "GET") => Resp::json(
            200,
            &json!({"objectDescribe": schema.summary(version), "recentItems": []}),
        ),
        (None, "POST") => {
            if !schema.writable {
                return RestError::new(
                    403,
                    "INSUFFICIENT_ACCESS_OR_READONLY",
                    "insufficient access rights on object id",
                )
                .into();
            }
            let fields = match json_body(req) {
                Ok(f) => f,
                Err(e) => return e.into(),
            };
            let ctx = write_ctx(shared, session);
            match write(&shared.org).insert(schema.name, &fields, &ctx) {
                Ok(id) => Resp::json(201, &json!({"id": id, "success": true, "errors": []}))
                    .with_header(
                        "location",
                        &format!("/services/data/v{version}/sobjects/{}/{id}", schema.name),
                    ),
                Err(errors) => RestError::bad_request(errors).into(),
            }
        }
        (None, m) => method_not_allowed(m, "GET,HEAD,POST"),
        (Some("describe"), "GET") => Resp::json(200, &schema.describe(version)),
        (Some("describe"), m) => method_not_allowed(m, "GET,HEAD"),
        (Some(id), m) => {
            let Some(norm) = ids::normalize(id) else {
                return RestError::new(
                    404,
                    "NOT_FOUND",
                    format!("Provided external ID field does not exist or is not accessible: {id}"),
                )
                .into();
            };
            match m {
                "GET" => {
                    let org = read(&shared.org);
                    let Some(table) = org.table(schema.name) else {
                        return RestError::not_found().into();
                    };
                    let Some(rec) = table.get(&norm) else {
                        return RestError::not_found().into();
                    };
                    let fields: Vec<usize> = match req.query_param("fields") {
                        Some(list) => {
                            let mut out = Vec::new();
                            for f in list.split(',').map(str::trim).filter(|f| !f.is_empty()) {
                                match soql::resolve_field(schema, f) {
                                    Ok(i) => out.push(i),
                                    Err(e) => return RestError::bad_request(vec![e]).into(),
                                }
                            }
                            out
                        }
                        None => (0..schema.fields.len()).collect(),
                    };
                    let mut body = Vec::new();
                    match serde_json::to_writer(
                        &mut body,
                        &RecSer {
                            schema,
                            rec,
                            fields: &fields,
                            version,
                        },
                    ) {
                        Ok(()) => Resp::raw_json(200, body),
                        Err(e) => RestError::new(500, "UNKNOWN_EXCEPTION", e.to_string()).into(),
                    }
                }
                "PATCH" => {
                    if !schema.writable {
                        return RestError::new(
                            403,
                            "INSUFFICIENT_ACCESS_OR_READONLY",
                            "insufficient access rights on object id",
                        )
                        .into();
                    }
                    let fields = match json_body(req) {
                        Ok(f) => f,
                        Err(e) => return e.into(),
                    };
                    let ctx = write_ctx(shared, session);
                    match write(&shared.org).update(schema.name, &norm, &fields, &ctx) {
                        Ok(()) => Resp::empty(204),
                        Err(errors)
                            if errors.first().is_some_and(|e| e.error_code == "NOT_FOUND") =>
                        {
                            RestError {
                                status: 404,
                                errors,
                            }
                            .into()
                        }
                        Err(errors) => RestError::bad_request(errors).into(),
                    }
                }
                m => method_not_allowed(m, "GET,HEAD,PATCH"),
            }
        }
    }
}

fn limits(shared: &Shared) -> Resp {
    let api = lock(&shared.api);
    Resp::json(
        200,
        &json!({
            "DailyApiRequests": {"Max": api.max, "Remaining": api.max.saturating_sub(api.used)},
            "ConcurrentAsyncGetReportInstances": {"Max": 200, "Remaining": 200},
            "DataStorageMB": {"Max": 1024, "Remaining": 1000},
        }),
    )
}

fn resources(shared: &Shared, session: &Session, version: &str) -> Resp {
    let org_id = read(&shared.org).org_id.clone();
    let b = format!("/services/data/v{version}");
    Resp::json(
        200,
        &json!({
            "sobjects": format!("{b}/sobjects"),
            "query": format!("{b}/query"),
            "queryAll": format!("{b}/queryAll"),
            "search": format!("{b}/search"),
            "composite": format!("{b}/composite"),
            "limits": format!("{b}/limits"),
            "identity": oauth::identity_url(shared, &org_id, &session.user_id),
        }),
    )
}

/// Routes an authenticated request (below `/services/data/vNN.N/`).
pub fn dispatch(
    shared: &Shared,
    session: &Session,
    req: &Req,
    version: &str,
    segs: &[&str],
) -> Resp {
    let method = req.method.as_str();
    match (segs, method) {
        ([], "GET") => resources(shared, session, version),
        (["query" | "queryAll"], "GET") => query(shared, req, version),
        (["query" | "queryAll", locator], "GET") => query_more(shared, req, version, locator),
        (["search"], "GET") => search(shared, req, version),
        (["sobjects", rest @ ..], _) => sobjects(shared, session, req, version, rest),
        (["composite"], "POST") => composite(shared, session, req, version),
        (["limits"], "GET") => limits(shared),
        ([] | ["query" | "queryAll" | "search" | "limits", ..], m) => {
            method_not_allowed(m, "GET,HEAD")
        }
        (["composite"], m) => method_not_allowed(m, "POST"),
        _ => RestError::not_found().into(),
    }
}

/// Path segments below `/services/data/`, without empty ones (clients
/// such as simple-salesforce add trailing slashes).
pub fn segments(path: &str) -> Vec<&str> {
    path.trim_start_matches("/services/data")
        .split('/')
        .filter(|s| !s.is_empty())
        .collect()
}

/// The whole `/services/data` tree: versions, auth, limits, faults.
pub fn handle(shared: &Shared, req: &Req) -> Resp {
    let segs = segments(&req.path);
    let Some((&first, rest)) = segs.split_first() else {
        return if req.method == "GET" {
            versions()
        } else {
            method_not_allowed(&req.method, "GET,HEAD")
        };
    };
    let Some(version) = parse_version(first) else {
        return RestError::not_found().into();
    };
    let Some(session) = req
        .token(crate::http::AUTH_SCHEMES)
        .and_then(|t| oauth::session(shared, &t))
    else {
        return RestError::invalid_session().into();
    };
    if !session.scopes.iter().any(|s| s == "api" || s == "full") {
        return RestError::new(
            401,
            "INVALID_SESSION_ID",
            "This session is not valid for use with the REST API",
        )
        .into();
    }
    if take_one(&shared.faults.limit_next) {
        return RestError::new(
            403,
            "REQUEST_LIMIT_EXCEEDED",
            "TotalRequests Limit exceeded.",
        )
        .into();
    }
    {
        let mut api = lock(&shared.api);
        let day = time::now_ms().div_euclid(86_400_000);
        if api.day != day {
            api.day = day;
            api.used = 0;
        }
        if api.used >= api.max {
            return RestError::new(
                403,
                "REQUEST_LIMIT_EXCEEDED",
                "TotalRequests Limit exceeded.",
            )
            .into();
        }
        api.used += 1;
    }
    dispatch(shared, &session, req, &version, rest)
}

// ---- composite ----

/// Resolves `@{ref.path}` against earlier results.
fn resolve_refs(text: &str, results: &HashMap<String, Value>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("@{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            return Ok(out);
        };
        let expr = &after[..end];
        let value = lookup_ref(expr, results).ok_or_else(|| expr.to_string())?;
        match value {
            Value::String(s) => out.push_str(&s),
            Value::Null => out.push_str("null"),
            other => {
                let _ = write!(out, "{other}");
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn lookup_ref(expr: &str, results: &HashMap<String, Value>) -> Option<Value> {
    let mut parts = expr.split('.');
    let first = parts.next()?;
    let (name, idx) = split_index(first);
    let mut cur = results.get(name)?.clone();
    if let Some(i) = idx {
        cur = cur.get(i)?.clone();
    }
    for p in parts {
        let (key, idx) = split_index(p);
        cur = cur.get(key)?.clone();
        if let Some(i) = idx {
            cur = cur.get(i)?.clone();
        }
    }
    Some(cur)
}

fn split_index(p: &str) -> (&str, Option<usize>) {
    match p.split_once('[') {
        Some((k, rest)) => (k, rest.trim_end_matches(']').parse().ok()),
        None => (p, None),
    }
}

fn resolve_value(v: &Value, results: &HashMap<String, Value>) -> Result<Value, String> {
    Ok(match v {
        Value::String(s) => Value::String(resolve_refs(s, results)?),
        Value::Array(a) => Value::Array(
            a.iter()
                .map(|x| resolve_value(x, results))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| Ok((k.clone(), resolve_value(x, results)?)))
                .collect::<Result<_, String>>()?,
        ),
        other => other.clone(),
    })
}

fn halted(message: &str) -> Value {
    json!([{"errorCode": "PROCESSING_HALTED", "message": message}])
}

fn composite(shared: &Shared, session: &Session, req: &Req, version: &str) -> Resp {
    let body = match json_body(req) {
        Ok(b) => b,
        Err(e) => return e.into(),
    };
    let all_or_none = body
        .get("allOrNone")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let Some(subs) = body.get("compositeRequest").and_then(Value::as_array) else {
        return RestError::new(400, "INVALID_INPUT", "compositeRequest is required").into();
    };
    if subs.is_empty() || subs.len() > 25 {
        return RestError::new(
            400,
            "LIMIT_EXCEEDED",
            "A composite request must have between 1 and 25 subrequests",
        )
        .into();
    }
    let mut seen = std::collections::HashSet::new();
    for s in subs {
        let rid = s.get("referenceId").and_then(Value::as_str).unwrap_or("");
        let valid = rid.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && rid.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid || !seen.insert(rid.to_string()) {
            return RestError::new(
                400,
                "INVALID_INPUT",
                format!("Invalid or duplicate referenceId: {rid}"),
            )
            .into();
        }
    }
    let snapshot = all_or_none.then(|| {
        let org = read(&shared.org);
        (
            org.contacts.clone(),
            org.leads.clone(),
            org.accounts.clone(),
            org.tasks.clone(),
        )
    });
    let mut results: HashMap<String, Value> = HashMap::new();
    let mut out: Vec<Value> = Vec::new();
    let mut failed = false;
    for s in subs {
        let rid = s
            .get("referenceId")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if failed && all_or_none {
            out.push(json!({"body": halted("The transaction was rolled back since another operation in the same transaction failed."), "httpHeaders": {}, "httpStatusCode": 400, "referenceId": rid}));
            continue;
        }
        let method = s
            .get("method")
            .and_then(Value::as_str)
            .unwrap_or("GET")
            .to_ascii_uppercase();
        let url = s.get("url").and_then(Value::as_str).unwrap_or("");
        let resolved = resolve_refs(url, &results).and_then(|u| {
            let b = s
                .get("body")
                .map(|b| resolve_value(b, &results))
                .transpose()?;
            Ok((u, b))
        });
        let (url, sub_body) = match resolved {
            Ok(x) => x,
            Err(expr) => {
                failed = true;
                let msg = format!(
                    "Invalid reference specified. No value for {expr} found in {rid}. Provided referenceId ({rid}) must be the value of an existing referenceId in the request."
                );
                out.push(json!({"body": halted(&msg), "httpHeaders": {}, "httpStatusCode": 400, "referenceId": rid}));
                continue;
            }
        };
        let (path, query) = match url.split_once('?') {
            Some((p, q)) => (p.to_string(), Some(q.to_string())),
            None => (url.clone(), None),
        };
        let segs = segments(&path);
        let resp = match segs.split_first() {
            Some((v, rest))
                if path.starts_with("/services/data/") && parse_version(v).is_some() =>
            {
                let sub = Req {
                    method: method.clone(),
                    path: path.clone(),
                    query,
                    headers: Default::default(),
                    body: sub_body
                        .map(|b| b.to_string().into_bytes().into())
                        .unwrap_or_default(),
                };
                let v = parse_version(v).unwrap_or_else(|| version.to_string());
                dispatch(shared, session, &sub, &v, rest)
            }
            _ => RestError::new(
                400,
                "INVALID_INPUT",
                format!("The url {url} is not a valid composite subrequest url"),
            )
            .into(),
        };
        let body_value: Value = if resp.body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&resp.body).unwrap_or(Value::Null)
        };
        let headers = resp
            .headers
            .iter()
            .find(|(k, _)| k == "location")
            .map(|(_, v)| json!({"Location": v}))
            .unwrap_or_else(|| json!({}));
        if resp.status >= 400 {
            failed = true;
        } else {
            results.insert(rid.clone(), body_value.clone());
        }
        out.push(json!({"body": body_value, "httpHeaders": headers, "httpStatusCode": resp.status, "referenceId": rid}));
    }
    if failed && let Some((c, l, a, t)) = snapshot {
        let mut org = write(&shared.org);
        org.contacts = c;
        org.leads = l;
        org.accounts = a;
        org.tasks = t;
        for item in &mut out {
            if item
                .get("httpStatusCode")
                .and_then(Value::as_u64)
                .is_some_and(|s| s < 400)
            {
                item["body"] = halted(
                    "The transaction was rolled back since another operation in the same transaction failed.",
                );
                item["httpStatusCode"] = json!(400);
                item["httpHeaders"] = json!({});
            }
        }
    }
    Resp::json(200, &json!({"compositeResponse": out}))
}

/// Errors as `ApiError`s, for tests.
#[allow(dead_code)]
pub fn errors_of(resp: &Resp) -> Vec<ApiError> {
    serde_json::from_slice::<Vec<Value>>(&resp.body)
        .unwrap_or_default()
        .into_iter()
        .map(|v| {
            ApiError::new(
                v["errorCode"].as_str().unwrap_or(""),
                v["message"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_labels() {
        assert_eq!(parse_version("v67.0").as_deref(), Some("67.0"));
        assert_eq!(parse_version("v58.0").as_deref(), Some("58.0"));
        assert!(parse_version("v99.0").is_none());
        assert!(parse_version("67.0").is_none());
        assert!(parse_version("v67.1").is_none());
        assert_eq!(release_label(67), "Summer '26");
        assert_eq!(release_label(62), "Winter '25");
        assert_eq!(release_label(60), "Spring '24");
    }

    #[test]
    fn references_resolve() {
        let mut r = HashMap::new();
        r.insert(
            "NewContact".to_string(),
            json!({"id": "003X", "records": [{"Id": "a"}]}),
        );
        assert_eq!(
            resolve_refs("x/@{NewContact.id}/y", &r).unwrap(),
            "x/003X/y"
        );
        assert_eq!(
            resolve_refs("@{NewContact.records[0].Id}", &r).unwrap(),
            "a"
        );
        assert_eq!(resolve_refs("@{Missing.id}", &r).unwrap_err(), "Missing.id");
        assert_eq!(
            segments("/services/data/v67.0/query/"),
            vec!["v67.0", "query"]
        );
    }
}
