//! Lightning record pages, plain: `GET /lightning/r/{Object}/{id}/view`
//! for Contacts, Leads and Accounts, the address a CRM pop-up opens, and
//! `GET /lightning/o/{Object}/new?defaultFieldValues=Phone=…`, the new-record
//! page an unknown caller's pop-up opens, with the given values filled in. Like
//! Salesforce, a page needs a browser logged in to the org (the `sid`
//! cookie of the login form); anyone else gets the login form, which comes
//! back to the record afterwards. Every value is HTML-escaped; no token,
//! session or password is ever shown.

use serde_json::Value;

use crate::http::{Req, Resp, html_escape};
use crate::oauth;
use crate::state::read;
use crate::store::{Org, Record};

/// The objects that have a record page, and the fields each page shows.
const PAGES: &[(&str, &[&str])] = &[
    (
        "Contact",
        &[
            "Title",
            "AccountId",
            "Phone",
            "MobilePhone",
            "OtherPhone",
            "Email",
        ],
    ),
    (
        "Lead",
        &[
            "Title",
            "Company",
            "Phone",
            "MobilePhone",
            "Email",
            "Status",
        ],
    ),
    ("Account", &["Type", "Phone", "BillingCity"]),
];

/// Salesforce's page for an address it does not serve.
pub fn not_found() -> Resp {
    Resp::html(
        404,
        "<!DOCTYPE html><html><body><h1>URL No Longer Exists</h1></body></html>".into(),
    )
}

/// `GET /lightning/r/{Object}/{id}/view`, or `None` when the path is not
/// shaped like a record page.
pub fn record_page(shared: &crate::state::Shared, req: &Req) -> Option<Resp> {
    let rest = req.path.strip_prefix("/lightning/r/")?;
    let segs: Vec<&str> = rest.split('/').collect();
    let [object, id, "view"] = segs.as_slice() else {
        return None;
    };
    if oauth::browser_user_id(shared, req).is_none() {
        // Back to this record after logging in.
        return Some(oauth::login_page(&req.path, None));
    }
    let org = read(&shared.org);
    Some(render(&org, object, id).unwrap_or_else(not_found))
}

/// `GET /lightning/o/{Object}/new[?defaultFieldValues=F=v,…]`, or `None`
/// when the path is not shaped like a new-record page. The page shows the
/// values the link pre-fills; it does not save (the emulator's REST API
/// creates records).
pub fn new_record_page(shared: &crate::state::Shared, req: &Req) -> Option<Resp> {
    let rest = req.path.strip_prefix("/lightning/o/")?;
    let segs: Vec<&str> = rest.split('/').collect();
    let [object, "new"] = segs.as_slice() else {
        return None;
    };
    if oauth::browser_user_id(shared, req).is_none() {
        let back = match &req.query {
            Some(q) => format!("{}?{q}", req.path),
            None => req.path.clone(),
        };
        return Some(oauth::login_page(&back, None));
    }
    let org = read(&shared.org);
    let Some((name, _)) = PAGES
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(object))
    else {
        return Some(not_found());
    };
    let table = org.table(name)?;
    let mut rows = String::new();
    // Salesforce's format: `Field=value` pairs separated by commas.
    let defaults = req.query_param("defaultFieldValues").unwrap_or_default();
    for pair in defaults.split(',').filter(|p| !p.is_empty()) {
        let Some((field, value)) = pair.split_once('=') else {
            continue;
        };
        let Some(i) = table.schema.field_index(field) else {
            continue;
        };
        rows.push_str(&format!(
            "<tr><th>{}</th><td id=\"{}\">{}</td></tr>",
            html_escape(table.schema.fields[i].label),
            html_escape(field),
            html_escape(value)
        ));
    }
    Some(Resp::html(
        200,
        format!(
            "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>New {object} | Salesforce</title></head><body>\
             <h1 id=\"name\">New {object}</h1><table id=\"details\">{rows}</table></body></html>",
            object = html_escape(table.schema.label),
        ),
    ))
}

fn render(org: &Org, object: &str, id: &str) -> Option<Resp> {
    let (name, fields) = PAGES
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(object))?;
    let table = org.table(name)?;
    let id = crate::ids::normalize(id)?;
    let record = table.get(&id)?;
    let text = |field: &str| field_text(table.schema, record, field);
    let title = text("Name");
    let mut rows = String::new();
    for field in *fields {
        let Some(i) = table.schema.field_index(field) else {
            continue;
        };
        let value = text(field);
        // A contact's account by name, linked to its own page.
        let (label, cell) = if *field == "AccountId" && !value.is_empty() {
            let account = org
                .accounts
                .get(&value)
                .map(|a| field_text(org.accounts.schema, a, "Name"))
                .unwrap_or_default();
            (
                "Account Name",
                format!(
                    "<a href=\"/lightning/r/Account/{}/view\">{}</a>",
                    html_escape(&value),
                    html_escape(&account)
                ),
            )
        } else {
            (table.schema.fields[i].label, html_escape(&value))
        };
        rows.push_str(&format!(
            "<tr><th>{}</th><td id=\"{}\">{cell}</td></tr>",
            html_escape(label),
            html_escape(field)
        ));
    }
    Some(Resp::html(
        200,
        format!(
            "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{title} | {object} | Salesforce</title></head><body>\
             <p id=\"object\">{object}</p><h1 id=\"name\">{title}</h1><table id=\"details\">{rows}</table></body></html>",
            title = html_escape(&title),
            object = html_escape(table.schema.label),
        ),
    ))
}

/// A field's value as text ("" when absent or null).
fn field_text(schema: &crate::schema::ObjectSchema, record: &Record, field: &str) -> String {
    match schema.field_index(field).map(|i| record.get(i)) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}
