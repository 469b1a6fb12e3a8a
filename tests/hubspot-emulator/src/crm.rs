//! The CRM APIs: owners, objects (contacts, companies, calls), search and
//! v4 associations.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::error::HsError;
use crate::http::{Req, Resp};
use crate::oauth;
use crate::state::{Crm, ObjType, Record, Shared, default_association, inverse_association, lock};

/// `GET` list and search page sizes.
const MAX_PAGE: usize = 100;
const MAX_SEARCH_PAGE: usize = 200;
/// Search's limits (filter groups, filters per group, filters in all).
const MAX_GROUPS: usize = 5;
const MAX_FILTERS_PER_GROUP: usize = 10;
const MAX_FILTERS: usize = 25;
/// Search never pages past this many results.
const MAX_SEARCH_RESULTS: usize = 10_000;

type Handled = Result<Resp, HsError>;

fn segments(path: &str) -> Vec<&str> {
    path.split('/').filter(|s| !s.is_empty()).collect()
}

/// Routes everything under `/crm/`. Authentication comes first.
pub fn handle(shared: &Shared, req: &Req) -> Resp {
    let r = oauth::authenticate(shared, req).and_then(|(_, scopes)| route(shared, req, &scopes));
    r.unwrap_or_else(Resp::from)
}

fn route(shared: &Shared, req: &Req, scopes: &[String]) -> Handled {
    let segs = segments(&req.path);
    let m = req.method.as_str();
    match segs.as_slice() {
        ["crm", "v3", "owners"] if m == "GET" => {
            oauth::require_scope(scopes, &["crm.objects.owners.read"])?;
            owners(shared, req)
        }
        ["crm", "v3", "owners", id] if m == "GET" => {
            oauth::require_scope(scopes, &["crm.objects.owners.read"])?;
            owner(shared, req, id)
        }
        ["crm", "v3", "objects", t, rest @ ..] => {
            let kind = ObjType::parse(t).ok_or_else(|| unknown_type(t))?;
            let write = m != "GET" && !matches!(rest, ["search"] | ["batch", "read"]);
            let scope = if write {
                kind.write_scope()
            } else {
                kind.read_scope()
            };
            oauth::require_scope(scopes, &[scope])?;
            match (m, rest) {
                ("GET", []) => list(shared, req, kind),
                ("POST", []) => create(shared, req, kind),
                ("POST", ["search"]) => search(shared, req, kind),
                ("POST", ["batch", "read"]) => batch_read(shared, req, kind),
                ("POST", ["batch", "create"]) => batch_create(shared, req, kind),
                ("GET", [id]) => read(shared, req, kind, id),
                ("PATCH", [id]) => update(shared, req, kind, id),
                ("DELETE", [id]) => archive(shared, kind, id),
                _ => Err(HsError::not_found()),
            }
        }
        [
            "crm",
            "v4",
            "objects",
            from,
            from_id,
            "associations",
            rest @ ..,
        ] => {
            let from = ObjType::parse(from).ok_or_else(|| unknown_type(from))?;
            match (m, rest) {
                ("GET", [to]) => {
                    let to = ObjType::parse(to).ok_or_else(|| unknown_type(to))?;
                    oauth::require_scope(scopes, &[from.read_scope()])?;
                    oauth::require_scope(scopes, &[to.read_scope()])?;
                    list_associations(shared, req, from, from_id, to)
                }
                ("PUT", ["default", to, to_id]) => {
                    let to = ObjType::parse(to).ok_or_else(|| unknown_type(to))?;
                    oauth::require_scope(scopes, &[from.write_scope()])?;
                    oauth::require_scope(scopes, &[to.write_scope()])?;
                    associate_default(shared, from, from_id, to, to_id)
                }
                _ => Err(HsError::not_found()),
            }
        }
        _ => Err(HsError::not_found()),
    }
}

fn unknown_type(t: &str) -> HsError {
    HsError::new(
        400,
        "VALIDATION_ERROR",
        format!("Unable to infer object type from: {t}"),
    )
}

fn parse_id(id: &str) -> Option<u64> {
    id.parse().ok()
}

fn body_json(req: &Req) -> Result<Value, HsError> {
    serde_json::from_slice(&req.body).map_err(|e| {
        HsError::validation(format!("Invalid input JSON on line 1: {e}"))
            .with("subCategory", json!("INVALID_JSON"))
    })
}

fn limit(req: &Req, default: usize, max: usize) -> Result<usize, HsError> {
    match req.query_param("limit") {
        None => Ok(default),
        Some(s) => s
            .parse::<usize>()
            .ok()
            .filter(|n| *n >= 1)
            .map(|n| n.min(max))
            .ok_or_else(|| HsError::validation(format!("limit must be a number, got {s:?}"))),
    }
}

/// `paging.next` for a list whose next page starts at `after`.
fn paging(req: &Req, after: Option<String>) -> Option<Value> {
    let after = after?;
    let mut link = url::Url::parse("https://x/").ok()?;
    link.set_path(&req.path);
    {
        let mut q = link.query_pairs_mut();
        for (k, v) in req.query_pairs() {
            if k != "after" {
                q.append_pair(&k, &v);
            }
        }
        q.append_pair("after", &after);
    }
    let link = format!("{}?{}", link.path(), link.query().unwrap_or(""));
    Some(json!({"next": {"after": after, "link": link}}))
}

/// The `after` query parameter (0 without one).
fn after_param<T: std::str::FromStr + Default>(req: &Req) -> Result<T, HsError> {
    req.query_param("after")
        .map(|a| a.parse().map_err(|_| HsError::validation("invalid after")))
        .transpose()
        .map(Option::unwrap_or_default)
}

fn with_paging(mut body: Value, paging: Option<Value>) -> Value {
    if let (Some(p), Some(m)) = (paging, body.as_object_mut()) {
        m.insert("paging".into(), p);
    }
    body
}

// ---- owners ----

fn owners(shared: &Shared, req: &Req) -> Handled {
    let limit = limit(req, 100, 500)?;
    let archived = req.query_param("archived").as_deref() == Some("true");
    let email = req.query_param("email");
    let after: u64 = after_param(req)?;
    let crm = lock(&shared.crm);
    let mut matching: Vec<_> = crm
        .owners
        .iter()
        .filter(|o| o.archived == archived)
        .filter(|o| {
            email
                .as_deref()
                .is_none_or(|e| o.email.eq_ignore_ascii_case(e))
        })
        .filter(|o| o.id >= after)
        .collect();
    matching.sort_by_key(|o| o.id);
    let next = matching.get(limit).map(|o| o.id.to_string());
    let results: Vec<Value> = matching.iter().take(limit).map(|o| o.to_json()).collect();
    Ok(Resp::json(
        200,
        &with_paging(json!({"results": results}), paging(req, next)),
    ))
}

fn owner(shared: &Shared, req: &Req, id: &str) -> Handled {
    let by_user = req.query_param("idProperty").as_deref() == Some("userId");
    let archived = req.query_param("archived").as_deref() == Some("true");
    let n = parse_id(id).ok_or_else(HsError::not_found)?;
    let crm = lock(&shared.crm);
    crm.owners
        .iter()
        .find(|o| (if by_user { o.user_id } else { o.id }) == n && o.archived == archived)
        .map(|o| Resp::json(200, &o.to_json()))
        .ok_or_else(HsError::not_found)
}

// ---- objects ----

fn string_props(v: Option<&Value>) -> Result<BTreeMap<String, String>, HsError> {
    let mut out = BTreeMap::new();
    let Some(v) = v else { return Ok(out) };
    let obj = v
        .as_object()
        .ok_or_else(|| HsError::validation("properties must be an object"))?;
    for (k, v) in obj {
        let s = match v {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Null => String::new(),
            _ => {
                return Err(HsError::validation(format!(
                    "Property values were not valid: {k} must be a string"
                )));
            }
        };
        out.insert(k.clone(), s);
    }
    Ok(out)
}

/// Validates and normalizes properties for `kind`.
fn check_props(
    kind: ObjType,
    props: &mut BTreeMap<String, String>,
    creating: bool,
) -> Result<(), HsError> {
    for system in [
        "hs_object_id",
        "createdate",
        "hs_createdate",
        "lastmodifieddate",
        "hs_lastmodifieddate",
    ] {
        if props.contains_key(system) {
            return Err(HsError::validation(format!(
                "Property values were not valid: {system} is a read only property; its value cannot be set."
            )));
        }
    }
    if kind == ObjType::Calls {
        if let Some(ts) = props.get("hs_timestamp").cloned() {
            let ms = parse_time(&ts).ok_or_else(|| {
                HsError::validation(format!(
                    "Property values were not valid: {ts:?} is not a valid hs_timestamp (epoch milliseconds or ISO 8601)"
                ))
            })?;
            props.insert("hs_timestamp".into(), crate::state::iso(ms));
        } else if creating {
            return Err(HsError::validation(
                "Property values were not valid: hs_timestamp is required",
            ));
        }
        if let Some(d) = props.get("hs_call_direction")
            && !d.is_empty()
            && d != "INBOUND"
            && d != "OUTBOUND"
        {
            return Err(HsError::validation(format!(
                "Property values were not valid: {d:?} was not one of the allowed options: [INBOUND, OUTBOUND] for hs_call_direction"
            )));
        }
        if let Some(d) = props.get("hs_call_duration")
            && !d.is_empty()
            && d.parse::<u64>().is_err()
        {
            return Err(HsError::validation(format!(
                "Property values were not valid: {d:?} is not a valid number for hs_call_duration"
            )));
        }
    }
    Ok(())
}

/// Epoch milliseconds or ISO 8601 text.
fn parse_time(s: &str) -> Option<i64> {
    if let Ok(n) = s.parse::<i64>() {
        return Some(n);
    }
    emulator_kit::time::parse_datetime(s).or_else(|| emulator_kit::time::parse_date(s))
}

/// Parses `associations` of a create body: (to id, type id, category).
fn parse_associations(v: Option<&Value>) -> Result<Vec<(u64, u32, String)>, HsError> {
    let mut out = Vec::new();
    let Some(list) = v else { return Ok(out) };
    let list = list
        .as_array()
        .ok_or_else(|| HsError::validation("associations must be an array"))?;
    for a in list {
        let to = a["to"]["id"]
            .as_str()
            .map(str::to_string)
            .or_else(|| a["to"]["id"].as_u64().map(|n| n.to_string()))
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| HsError::validation("associations[].to.id is required"))?;
        let types = a["types"]
            .as_array()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| HsError::validation("associations[].types is required"))?;
        for t in types {
            let category = t["associationCategory"].as_str().unwrap_or("").to_string();
            let id = t["associationTypeId"]
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| HsError::validation("associationTypeId is required"))?;
            out.push((to, id, category));
        }
    }
    Ok(out)
}

/// The object type a HubSpot-defined association type from `from` leads to.
fn association_target(from: ObjType, type_id: u32) -> Option<ObjType> {
    crate::state::ASSOCIATION_TYPES
        .iter()
        .find(|(f, _, id)| *f == from && *id == type_id)
        .map(|(_, t, _)| *t)
}

/// Inserts a record; answers its id.
pub fn insert(
    shared: &Shared,
    crm: &mut Crm,
    kind: ObjType,
    mut props: BTreeMap<String, String>,
    associations: &[(u64, u32, String)],
) -> Result<u64, HsError> {
    check_props(kind, &mut props, true)?;
    let mut links = Vec::new();
    for (to, type_id, category) in associations {
        if category != "HUBSPOT_DEFINED" {
            return Err(HsError::validation(format!(
                "associationCategory {category:?} is not supported here (HUBSPOT_DEFINED only)"
            )));
        }
        let target = association_target(kind, *type_id).ok_or_else(|| {
            HsError::validation(format!(
                "{type_id} is not a valid association type id from {}",
                kind.name()
            ))
        })?;
        if crm.get(target, *to).is_none() {
            return Err(HsError::validation(format!(
                "No {} with ID {to} exists",
                target.name().trim_end_matches('s')
            ))
            .with("subCategory", json!("crm.associations.INVALID_OBJECT_IDS")));
        }
        links.push((target, *to, *type_id));
    }
    let now = shared.now_ms();
    let lag = shared.settings().search_lag_ms;
    let id = crm.alloc_id();
    crm.records.insert(
        id,
        Record {
            id,
            kind,
            props,
            created_ms: now,
            updated_ms: now,
            archived: false,
            searchable_ms: now + lag,
        },
    );
    for (target, to, type_id) in links {
        crm.link((kind, id), (target, to), type_id);
    }
    Ok(id)
}

fn requested_props(req: &Req) -> Vec<String> {
    req.query_list("properties")
}

fn list(shared: &Shared, req: &Req, kind: ObjType) -> Handled {
    let limit = limit(req, 10, MAX_PAGE)?;
    let after: u64 = after_param(req)?;
    let archived = req.query_param("archived").as_deref() == Some("true");
    let names = requested_props(req);
    let crm = lock(&shared.crm);
    let recs: Vec<&Record> = crm
        .records
        .range(after..)
        .map(|(_, r)| r)
        .filter(|r| r.kind == kind && r.archived == archived)
        .take(limit + 1)
        .collect();
    let next = recs.get(limit).map(|r| r.id.to_string());
    let results: Vec<Value> = recs.iter().take(limit).map(|r| r.to_json(&names)).collect();
    Ok(Resp::json(
        200,
        &with_paging(json!({"results": results}), paging(req, next)),
    ))
}

fn find_by(crm: &Crm, kind: ObjType, id: &str, id_property: Option<&str>) -> Option<u64> {
    match id_property {
        None | Some("hs_object_id") => parse_id(id).filter(|n| crm.get(kind, *n).is_some()),
        Some(p) => crm
            .records
            .values()
            .find(|r| {
                r.kind == kind
                    && !r.archived
                    && r.props.get(p).is_some_and(|v| v.eq_ignore_ascii_case(id))
            })
            .map(|r| r.id),
    }
}

fn with_associations(crm: &Crm, kind: ObjType, id: u64, mut v: Value, to: &[String]) -> Value {
    let mut assoc = Map::new();
    for t in to {
        let Some(tt) = ObjType::parse(t) else {
            continue;
        };
        let results: Vec<Value> = crm
            .associated(kind, id, tt)
            .into_iter()
            .map(|(other, type_id, _)| {
                json!({"id": other.to_string(), "type": format!("{}_to_{}", kind.name().trim_end_matches('s'), tt.name().trim_end_matches('s')), "typeId": type_id})
            })
            .collect();
        if !results.is_empty() {
            assoc.insert(tt.name().into(), json!({"results": results}));
        }
    }
    if !assoc.is_empty()
        && let Some(m) = v.as_object_mut()
    {
        m.insert("associations".into(), Value::Object(assoc));
    }
    v
}

fn read(shared: &Shared, req: &Req, kind: ObjType, id: &str) -> Handled {
    let id_property = req.query_param("idProperty");
    let crm = lock(&shared.crm);
    let n = find_by(&crm, kind, id, id_property.as_deref()).ok_or_else(HsError::not_found)?;
    let r = crm.get(kind, n).ok_or_else(HsError::not_found)?;
    let v = r.to_json(&requested_props(req));
    let v = with_associations(&crm, kind, n, v, &req.query_list("associations"));
    Ok(Resp::json(200, &v))
}

fn create(shared: &Shared, req: &Req, kind: ObjType) -> Handled {
    let body = body_json(req)?;
    let props = string_props(body.get("properties"))?;
    let assoc = parse_associations(body.get("associations"))?;
    let mut crm = lock(&shared.crm);
    let id = insert(shared, &mut crm, kind, props, &assoc)?;
    let r = crm.get(kind, id).ok_or_else(HsError::not_found)?;
    let names: Vec<String> = r.props.keys().cloned().collect();
    Ok(Resp::json(201, &r.to_json(&names)))
}

fn update(shared: &Shared, req: &Req, kind: ObjType, id: &str) -> Handled {
    let body = body_json(req)?;
    let mut props = string_props(body.get("properties"))?;
    check_props(kind, &mut props, false)?;
    let id_property = req.query_param("idProperty");
    let now = shared.now_ms();
    let mut crm = lock(&shared.crm);
    let n = find_by(&crm, kind, id, id_property.as_deref()).ok_or_else(HsError::not_found)?;
    let r = crm.records.get_mut(&n).ok_or_else(HsError::not_found)?;
    for (k, v) in &props {
        if v.is_empty() {
            r.props.remove(k);
        } else {
            r.props.insert(k.clone(), v.clone());
        }
    }
    r.updated_ms = now;
    let names: Vec<String> = props.keys().cloned().collect();
    Ok(Resp::json(200, &r.to_json(&names)))
}

fn archive(shared: &Shared, kind: ObjType, id: &str) -> Handled {
    let mut crm = lock(&shared.crm);
    // Archiving what is not there (or already archived) is a 204 too.
    if let Some(r) = parse_id(id).and_then(|n| crm.records.get_mut(&n))
        && r.kind == kind
    {
        r.archived = true;
    }
    Ok(Resp::empty(204))
}

fn batch_read(shared: &Shared, req: &Req, kind: ObjType) -> Handled {
    let body = body_json(req)?;
    let names: Vec<String> = body["properties"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let id_property = body["idProperty"].as_str();
    let inputs = body["inputs"]
        .as_array()
        .ok_or_else(|| HsError::validation("inputs is required"))?;
    let crm = lock(&shared.crm);
    let mut results = Vec::new();
    for i in inputs {
        let id = i["id"].as_str().map(str::to_string).unwrap_or_default();
        if let Some(r) = find_by(&crm, kind, &id, id_property).and_then(|n| crm.get(kind, n)) {
            results.push(r.to_json(&names));
        }
    }
    let now = crate::state::iso(shared.now_ms());
    Ok(Resp::json(
        200,
        &json!({"status": "COMPLETE", "results": results, "startedAt": now, "completedAt": now}),
    ))
}

fn batch_create(shared: &Shared, req: &Req, kind: ObjType) -> Handled {
    let body = body_json(req)?;
    let inputs = body["inputs"]
        .as_array()
        .ok_or_else(|| HsError::validation("inputs is required"))?;
    let mut parsed = Vec::new();
    for i in inputs {
        parsed.push((
            string_props(i.get("properties"))?,
            parse_associations(i.get("associations"))?,
        ));
    }
    let mut crm = lock(&shared.crm);
    let mut results = Vec::new();
    for (props, assoc) in parsed {
        let id = insert(shared, &mut crm, kind, props, &assoc)?;
        if let Some(r) = crm.get(kind, id) {
            let names: Vec<String> = r.props.keys().cloned().collect();
            results.push(r.to_json(&names));
        }
    }
    let now = crate::state::iso(shared.now_ms());
    Ok(Resp::json(
        201,
        &json!({"status": "COMPLETE", "results": results, "startedAt": now, "completedAt": now}),
    ))
}

// ---- search ----

/// One search filter.
#[derive(Debug)]
struct Filter {
    property: String,
    operator: String,
    value: Option<String>,
    high: Option<String>,
    values: Vec<String>,
}

fn text_of(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn parse_filters(body: &Value) -> Result<Vec<Vec<Filter>>, HsError> {
    let groups = match body.get("filterGroups") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(a)) => a,
        Some(_) => return Err(HsError::validation("filterGroups must be an array")),
    };
    if groups.len() > MAX_GROUPS {
        return Err(HsError::validation(format!(
            "The maximum number of filterGroups is {MAX_GROUPS}"
        )));
    }
    let mut out = Vec::new();
    let mut total = 0;
    for g in groups {
        let filters = g["filters"].as_array().cloned().unwrap_or_default();
        if filters.len() > MAX_FILTERS_PER_GROUP {
            return Err(HsError::validation(format!(
                "The maximum number of filters in a filterGroup is {MAX_FILTERS_PER_GROUP}"
            )));
        }
        total += filters.len();
        let mut group = Vec::new();
        for f in filters {
            let property = f["propertyName"]
                .as_str()
                .ok_or_else(|| HsError::validation("filters[].propertyName is required"))?
                .to_string();
            let operator = f["operator"].as_str().unwrap_or("EQ").to_string();
            const OPS: &[&str] = &[
                "EQ",
                "NEQ",
                "LT",
                "LTE",
                "GT",
                "GTE",
                "BETWEEN",
                "IN",
                "NOT_IN",
                "HAS_PROPERTY",
                "NOT_HAS_PROPERTY",
                "CONTAINS_TOKEN",
                "NOT_CONTAINS_TOKEN",
            ];
            if !OPS.contains(&operator.as_str()) {
                return Err(HsError::validation(format!(
                    "Invalid operator {operator:?}; allowed: {}",
                    OPS.join(", ")
                )));
            }
            group.push(Filter {
                property,
                operator,
                value: f.get("value").and_then(text_of),
                high: f.get("highValue").and_then(text_of),
                values: f["values"]
                    .as_array()
                    .map(|a| a.iter().filter_map(text_of).collect())
                    .unwrap_or_default(),
            });
        }
        out.push(group);
    }
    if total > MAX_FILTERS {
        return Err(HsError::validation(format!(
            "The maximum number of filters is {MAX_FILTERS}"
        )));
    }
    Ok(out)
}

/// Compares as numbers, then as date-times, then as case-insensitive text.
fn compare(a: &str, b: &str) -> Ordering {
    if let (Ok(x), Ok(y)) = (a.parse::<f64>(), b.parse::<f64>()) {
        return x.partial_cmp(&y).unwrap_or(Ordering::Equal);
    }
    if let (Some(x), Some(y)) = (parse_time(a), parse_time(b)) {
        return x.cmp(&y);
    }
    a.to_lowercase().cmp(&b.to_lowercase())
}

fn tokens(s: &str) -> Vec<String> {
    s.split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// A `CONTAINS_TOKEN` pattern: a token, `*` wildcards allowed.
fn token_matches(value: &str, pattern: &str) -> bool {
    let pattern = pattern.to_lowercase();
    if !pattern.contains('*') {
        let wanted = tokens(&pattern);
        let have = tokens(value);
        return !wanted.is_empty() && have.windows(wanted.len()).any(|w| w == wanted.as_slice());
    }
    let parts: Vec<&str> = pattern.split('*').collect();
    tokens(value).iter().any(|t| wildcard(t, &parts)) || wildcard(&value.to_lowercase(), &parts)
}

fn wildcard(s: &str, parts: &[&str]) -> bool {
    let mut rest = s;
    for (i, p) in parts.iter().enumerate() {
        if i == 0 {
            match rest.strip_prefix(p) {
                Some(r) => rest = r,
                None => return false,
            }
        } else if i == parts.len() - 1 {
            return rest.ends_with(p);
        } else {
            match rest.find(p) {
                Some(at) => rest = &rest[at + p.len()..],
                None => return false,
            }
        }
    }
    rest.is_empty()
}

fn matches(r: &Record, f: &Filter) -> bool {
    let v = r.prop(&f.property).filter(|v| !v.is_empty());
    let want = f.value.as_deref().unwrap_or("");
    match f.operator.as_str() {
        "HAS_PROPERTY" => v.is_some(),
        "NOT_HAS_PROPERTY" => v.is_none(),
        "NEQ" => v.is_none_or(|v| compare(&v, want) != Ordering::Equal),
        "NOT_IN" => v.is_none_or(|v| f.values.iter().all(|x| compare(&v, x) != Ordering::Equal)),
        "NOT_CONTAINS_TOKEN" => v.is_none_or(|v| !token_matches(&v, want)),
        _ => {
            let Some(v) = v else { return false };
            match f.operator.as_str() {
                "EQ" => compare(&v, want) == Ordering::Equal,
                "LT" => compare(&v, want) == Ordering::Less,
                "LTE" => compare(&v, want) != Ordering::Greater,
                "GT" => compare(&v, want) == Ordering::Greater,
                "GTE" => compare(&v, want) != Ordering::Less,
                "BETWEEN" => {
                    let high = f.high.as_deref().unwrap_or("");
                    compare(&v, want) != Ordering::Less && compare(&v, high) != Ordering::Greater
                }
                "IN" => f.values.iter().any(|x| compare(&v, x) == Ordering::Equal),
                "CONTAINS_TOKEN" => token_matches(&v, want),
                _ => false,
            }
        }
    }
}

/// (property, descending) of the first sort: `{"propertyName","direction"}`
/// or a bare property name.
fn parse_sort(body: &Value) -> Option<(String, bool)> {
    let s = body["sorts"].as_array()?.first()?;
    match s {
        Value::String(p) => Some((p.clone(), false)),
        Value::Object(o) => Some((
            o.get("propertyName")?.as_str()?.to_string(),
            o.get("direction").and_then(Value::as_str) == Some("DESCENDING"),
        )),
        _ => None,
    }
}

fn search(shared: &Shared, req: &Req, kind: ObjType) -> Handled {
    let body = body_json(req)?;
    let groups = parse_filters(&body)?;
    let limit = match &body["limit"] {
        Value::Null => 10,
        v => v
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .filter(|n| (1..=MAX_SEARCH_PAGE).contains(n))
            .ok_or_else(|| {
                HsError::validation(format!("limit must be between 1 and {MAX_SEARCH_PAGE}"))
            })?,
    };
    let after = match &body["after"] {
        Value::Null => 0,
        v => text_of(v)
            .and_then(|s| s.parse::<usize>().ok())
            .ok_or_else(|| HsError::validation("after must be a number"))?,
    };
    let names: Vec<String> = body["properties"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let query = body["query"].as_str().map(str::to_lowercase);
    let now = shared.now_ms();
    let crm = lock(&shared.crm);
    let mut found: Vec<&Record> = crm
        .records
        .values()
        .filter(|r| r.kind == kind && !r.archived && r.searchable_ms <= now)
        .filter(|r| groups.is_empty() || groups.iter().any(|g| g.iter().all(|f| matches(r, f))))
        .filter(|r| {
            query
                .as_deref()
                .is_none_or(|q| r.props.values().any(|v| v.to_lowercase().contains(q)))
        })
        .collect();
    if let Some((prop, desc)) = parse_sort(&body) {
        found.sort_by(|a, b| {
            let o = match (a.prop(&prop), b.prop(&prop)) {
                (Some(x), Some(y)) => compare(&x, &y),
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (None, None) => Ordering::Equal,
            };
            if desc { o.reverse() } else { o }.then(a.id.cmp(&b.id))
        });
    }
    let total = found.len();
    let page: Vec<Value> = found
        .iter()
        .skip(after)
        .take(limit)
        .map(|r| r.to_json(&names))
        .collect();
    let next = after.saturating_add(limit);
    let mut out = json!({"total": total, "results": page});
    if next < total.min(MAX_SEARCH_RESULTS)
        && let Some(m) = out.as_object_mut()
    {
        m.insert(
            "paging".into(),
            json!({"next": {"after": next.to_string(), "link": format!("?after={next}")}}),
        );
    }
    Ok(Resp::json(200, &out))
}

// ---- associations (v4) ----

fn list_associations(shared: &Shared, req: &Req, from: ObjType, id: &str, to: ObjType) -> Handled {
    let limit = limit(req, 500, 500)?;
    let after: usize = after_param(req)?;
    let crm = lock(&shared.crm);
    let n = parse_id(id)
        .filter(|n| crm.get(from, *n).is_some())
        .ok_or_else(HsError::not_found)?;
    let mut by_target: BTreeMap<u64, Vec<Value>> = BTreeMap::new();
    for (other, type_id, category) in crm.associated(from, n, to) {
        by_target
            .entry(other)
            .or_default()
            .push(json!({"category": category, "typeId": type_id, "label": Value::Null}));
    }
    let all: Vec<Value> = by_target
        .into_iter()
        .map(|(other, types)| json!({"toObjectId": other, "associationTypes": types}))
        .collect();
    let page: Vec<Value> = all.iter().skip(after).take(limit).cloned().collect();
    let next = (after.saturating_add(limit) < all.len()).then(|| (after + limit).to_string());
    Ok(Resp::json(
        200,
        &with_paging(json!({"results": page}), paging(req, next)),
    ))
}

/// Links two records with the default type; answers HubSpot's batch-like
/// body.
pub fn associate(
    crm: &mut Crm,
    from: ObjType,
    from_id: u64,
    to: ObjType,
    to_id: u64,
) -> Result<u32, HsError> {
    let type_id = default_association(from, to).ok_or_else(|| {
        HsError::validation(format!(
            "No default association type from {} to {}",
            from.name(),
            to.name()
        ))
    })?;
    if crm.get(from, from_id).is_none() || crm.get(to, to_id).is_none() {
        return Err(HsError::new(
            404,
            "OBJECT_NOT_FOUND",
            "One or more of the objects to associate does not exist",
        ));
    }
    let exists = crm
        .associated(from, from_id, to)
        .iter()
        .any(|(o, t, _)| *o == to_id && *t == type_id);
    if !exists {
        crm.link((from, from_id), (to, to_id), type_id);
    }
    Ok(type_id)
}

fn associate_default(
    shared: &Shared,
    from: ObjType,
    from_id: &str,
    to: ObjType,
    to_id: &str,
) -> Handled {
    let (Some(f), Some(t)) = (parse_id(from_id), parse_id(to_id)) else {
        return Err(HsError::not_found());
    };
    let mut crm = lock(&shared.crm);
    let type_id = associate(&mut crm, from, f, to, t)?;
    let now = crate::state::iso(shared.now_ms());
    let inverse = inverse_association(type_id).unwrap_or(type_id);
    Ok(Resp::json(
        200,
        &json!({
            "status": "COMPLETE",
            "results": [
                {"from": {"id": from_id}, "to": {"id": to_id}, "associationSpec": {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": type_id}},
                {"from": {"id": to_id}, "to": {"id": from_id}, "associationSpec": {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": inverse}},
            ],
            "startedAt": now,
            "completedAt": now,
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_and_wildcards() {
        assert!(token_matches("Ada Lovelace", "lovelace"));
        assert!(token_matches("ada@example.com", "example"));
        assert!(token_matches("ada@example.com", "*@example.com"));
        assert!(token_matches("+1 415 555 0100", "*0100"));
        assert!(!token_matches("Ada Lovelace", "love"));
        assert!(token_matches("Ada Lovelace", "love*"));
    }

    #[test]
    fn comparisons_are_numeric_then_temporal_then_textual() {
        assert_eq!(compare("9", "10"), Ordering::Less);
        assert_eq!(
            compare("2025-01-02T00:00:00.000Z", "1735689600000"),
            Ordering::Greater
        );
        assert_eq!(compare("abc", "ABC"), Ordering::Equal);
    }
}
