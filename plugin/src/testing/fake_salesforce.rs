//! A small fake Salesforce for native unit tests: the token (code and
//! refresh grants), revoke, identity and REST endpoints, served through a
//! `FakeHost`'s HTTP side, with switches for the faults the tests need.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::bindings::pbx::crm::http_fetch::{self, Method};
use pbx_crm_sdk::testing::{FakeHost, lock};

/// The fake's login host.
pub const LOGIN: &str = "https://login.salesforce.com";
/// The fake's instance.
pub const INSTANCE: &str = "https://acme.my.salesforce.com";
/// The fake org's id.
pub const ORG: &str = "00D000000000001AAA";
/// The authorizing user's id.
pub const USER: &str = "005000000000001AAA";
/// The authorizing user's login.
pub const USERNAME: &str = "admin@example.org";
/// The app's Consumer Key.
pub const KEY: &str = "3MVG9fakeConsumerKey";
/// The app's Consumer Secret.
pub const SECRET: &str = "s3cr3t-consumer-XYZ";
/// The PBX's callback URL.
pub const CALLBACK: &str = "https://pbx.example.org/crm/salesforce/oauth/callback";

/// A scripted answer: status and body.
pub type Canned = (u16, String);

#[derive(Default)]
struct SfState {
    /// code -> (challenge, redirect_uri)
    codes: BTreeMap<String, (String, String)>,
    access: BTreeSet<String>,
    refresh: BTreeSet<String>,
    counter: u64,
    /// Successful PATCHes of Tasks.
    patches: u32,
    /// Issue a new refresh token on every refresh (and kill the old one).
    rotate: bool,
    /// Issue no refresh token (the app's scopes lack refresh_token).
    no_refresh: bool,
    /// Sign answers with a wrong secret.
    bad_signature: bool,
    /// The callback URL configured in the app.
    callback: String,
    /// Answers for the REST endpoints, used before the default ones.
    rest_script: VecDeque<Canned>,
    /// Real delay of the token endpoint, ms.
    token_delay_ms: u64,
    code_grants: u32,
    refresh_grants: u32,
    revoked: Vec<String>,
    issued_access: Vec<String>,
    issued_refresh: Vec<String>,
    issued_codes: Vec<String>,
    /// The org's users (`set_users`); `None`: the generic query answers.
    users: Option<Arc<Vec<serde_json::Value>>>,
    /// Largest page of users the fake sends, whatever the client asks.
    user_page_size: Option<usize>,
    /// Pages of users served.
    user_pages: u32,
    /// Contacts, Leads, Accounts and Tasks (JSON with `attributes.type`;
    /// `_hidden` marks records not yet in the search index).
    records: Vec<serde_json::Value>,
    /// New Contacts and Leads stay out of search until `index_now`.
    search_lag: bool,
    /// The org has Person Accounts (`set_person_accounts`); without them
    /// their fields in a search are `INVALID_FIELD`.
    person_accounts: bool,
    /// Decoded `q` of every search.
    searches: Vec<String>,
    /// Decoded `q` of every query.
    queries: Vec<String>,
    /// How the next Task creates fail.
    task_faults: VecDeque<TaskFault>,
    /// The org's API use (`set_api_usage`): every REST answer counts one
    /// and carries `Sforce-Limit-Info`.
    api_usage: Option<(u64, u64)>,
    /// Real delay of every REST answer, ms.
    rest_delay_ms: u64,
    /// Who each code was issued to, when not [`USER`] (`allow_as`).
    code_users: BTreeMap<String, String>,
    /// Users whose identity says `active: false`.
    inactive: BTreeSet<String>,
    /// Users the token endpoint refuses as inactive.
    inactive_at_token: BTreeSet<String>,
}

/// How a Task create fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskFault {
    /// The Task is stored, then the answer is a 500 (a crash after the
    /// create).
    StoredThen500,
    /// The Task is stored, then the connection drops (a timeout).
    StoredThenTimeout,
    /// Nothing is stored; 503.
    Unavailable,
}

/// A small Salesforce: token (authorization_code, refresh_token), revoke,
/// identity and REST (`/services/data/v67.0/...`) endpoints.
pub struct FakeSalesforce {
    state: Mutex<SfState>,
}

pub fn response(status: u16, body: &str) -> http_fetch::Response {
    http_fetch::Response {
        status,
        headers: vec![http_fetch::Header {
            name: "content-type".into(),
            value: "application/json".into(),
        }],
        body: body.as_bytes().to_vec(),
    }
}

pub fn oauth_error(error: &str, description: &str) -> http_fetch::Response {
    response(
        400,
        &serde_json::json!({"error": error, "error_description": description}).to_string(),
    )
}

/// base64(HMAC-SHA256(secret, id + issued_at)), as Salesforce signs.
pub fn sign(secret: &str, id: &str, issued_at: &str) -> String {
    match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(mut mac) => {
            mac.update(id.as_bytes());
            mac.update(issued_at.as_bytes());
            STANDARD.encode(mac.finalize().into_bytes())
        }
        Err(_) => String::new(),
    }
}

#[allow(dead_code)]
impl FakeSalesforce {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(SfState {
                callback: CALLBACK.into(),
                ..SfState::default()
            }),
        })
    }

    /// Install this fake as `host`'s network.
    pub fn serve(self: &Arc<Self>, host: &FakeHost) {
        let sf = Arc::clone(self);
        host.on_fetch(move |req| sf.handle(req));
    }

    /// The administrator clicks Allow on the consent page `authorize_url`:
    /// returns the callback's query string (`code=...&state=...`).
    pub fn allow(&self, authorize_url: &str) -> String {
        let params: BTreeMap<String, String> = url::Url::parse(authorize_url)
            .map(|u| u.query_pairs().into_owned().collect())
            .unwrap_or_default();
        let get = |k: &str| params.get(k).cloned().unwrap_or_default();
        let mut s = lock(&self.state);
        s.counter += 1;
        let code = format!("aPrxCODE{}", s.counter);
        s.codes
            .insert(code.clone(), (get("code_challenge"), get("redirect_uri")));
        s.issued_codes.push(code.clone());
        url::form_urlencoded::Serializer::new(String::new())
            .append_pair("code", &code)
            .append_pair("state", &get("state"))
            .finish()
    }

    /// A person (`user`) logs in and clicks Allow on the sign-in page
    /// `authorize_url`: returns the callback's query string.
    pub fn allow_as(&self, authorize_url: &str, user: &str) -> String {
        let query = self.allow(authorize_url);
        let code = url::form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == "code")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        lock(&self.state).code_users.insert(code, user.into());
        query
    }

    /// The person clicks Deny on the page `authorize_url`: the callback's
    /// query string.
    pub fn deny(&self, authorize_url: &str) -> String {
        let state = url::Url::parse(authorize_url)
            .ok()
            .and_then(|u| {
                u.query_pairs()
                    .find(|(k, _)| k == "state")
                    .map(|(_, v)| v.into_owned())
            })
            .unwrap_or_default();
        url::form_urlencoded::Serializer::new(String::new())
            .append_pair("error", "access_denied")
            .append_pair("error_description", "end-user denied authorization")
            .append_pair("state", &state)
            .finish()
    }

    /// `user`'s identity says it is deactivated (deactivated after logging in).
    pub fn deactivate(&self, user: &str) {
        lock(&self.state).inactive.insert(user.into());
    }

    /// The token endpoint refuses codes of `user` as an inactive user.
    pub fn deactivate_before_token(&self, user: &str) {
        lock(&self.state).inactive_at_token.insert(user.into());
    }

    /// Whether `token` is a live access or refresh token.
    pub fn is_live(&self, token: &str) -> bool {
        let s = lock(&self.state);
        s.access.contains(token) || s.refresh.contains(token)
    }

    pub fn set_rotate(&self, on: bool) {
        lock(&self.state).rotate = on;
    }
    pub fn set_no_refresh(&self, on: bool) {
        lock(&self.state).no_refresh = on;
    }
    pub fn set_bad_signature(&self, on: bool) {
        lock(&self.state).bad_signature = on;
    }
    pub fn set_callback(&self, url: &str) {
        lock(&self.state).callback = url.into();
    }
    pub fn set_token_delay_ms(&self, ms: u64) {
        lock(&self.state).token_delay_ms = ms;
    }
    /// Every access token expires (sessions time out).
    pub fn expire_sessions(&self) {
        lock(&self.state).access.clear();
    }
    /// Every refresh token dies (revoked in Setup, or a policy).
    pub fn kill_refresh_tokens(&self) {
        lock(&self.state).refresh.clear();
    }
    /// Answer the next REST requests with these, in order.
    pub fn script_rest(&self, answers: &[(u16, &str)]) {
        lock(&self.state)
            .rest_script
            .extend(answers.iter().map(|(s, b)| (*s, b.to_string())));
    }
    pub fn code_grants(&self) -> u32 {
        lock(&self.state).code_grants
    }
    pub fn refresh_grants(&self) -> u32 {
        lock(&self.state).refresh_grants
    }
    pub fn revoked(&self) -> Vec<String> {
        lock(&self.state).revoked.clone()
    }
    /// Every token the fake ever issued (to search logs for them).
    pub fn issued(&self) -> Vec<String> {
        let s = lock(&self.state);
        s.issued_access
            .iter()
            .chain(&s.issued_refresh)
            .chain(&s.issued_codes)
            .cloned()
            .collect()
    }
    /// The org's users, served by `SELECT ... FROM User` with paging
    /// (`Sforce-Query-Options: batchSize` honoured, 2,000 by default).
    /// Calling it again replaces them for later queries; a query already
    /// paging keeps its snapshot, as Salesforce's query locators do.
    pub fn set_users(&self, users: Vec<serde_json::Value>) {
        lock(&self.state).users = Some(Arc::new(users));
    }
    /// Send pages of at most `n` users (Salesforce may send fewer than asked).
    pub fn set_user_page_size(&self, n: usize) {
        lock(&self.state).user_page_size = Some(n);
    }
    /// Pages of users served so far.
    pub fn user_pages(&self) -> u32 {
        lock(&self.state).user_pages
    }
    /// Add a record of `object` with `fields` (Id given or generated);
    /// returns the Id. Searchable at once.
    pub fn add_record(&self, object: &str, fields: serde_json::Value) -> String {
        let mut s = lock(&self.state);
        Self::store_record(&mut s, object, fields, false)
    }

    fn store_record(
        s: &mut SfState,
        object: &str,
        fields: serde_json::Value,
        hidden: bool,
    ) -> String {
        s.counter += 1;
        let prefix = match object {
            "Contact" => "003",
            "Lead" => "00Q",
            "Account" => "001",
            "Task" => "00T",
            "Case" => "500",
            _ => "0XX",
        };
        let mut record = fields;
        let id = record["Id"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| format!("{prefix}{:012}AAA", s.counter));
        record["Id"] = serde_json::json!(id);
        record["attributes"] = serde_json::json!({"type": object, "url": format!("/services/data/v67.0/sobjects/{object}/{id}")});
        if record.get("Name").is_none() && record.get("LastName").is_some() {
            let first = record["FirstName"].as_str().unwrap_or_default().to_string();
            let last = record["LastName"].as_str().unwrap_or_default().to_string();
            record["Name"] = serde_json::json!(format!("{first} {last}").trim().to_string());
        }
        if record.get("LastModifiedDate").is_none() {
            record["LastModifiedDate"] =
                serde_json::json!(format!("2024-01-01T00:00:{:02}.000+0000", s.counter % 60));
        }
        if hidden {
            record["_hidden"] = serde_json::json!(true);
        }
        s.records.push(record);
        id
    }

    /// The org has Person Accounts (or not, the default): searches may name
    /// their fields and answer them.
    pub fn set_person_accounts(&self, on: bool) {
        lock(&self.state).person_accounts = on;
    }

    /// Add a person account (turning Person Accounts on): an Account with
    /// `fields` (`FirstName`, `LastName`, `Phone`, `PersonMobilePhone`, …)
    /// and `IsPersonAccount`, and its hidden Contact, whose id is the
    /// Account's `PersonContactId`. Returns (account id, person contact id).
    pub fn add_person_account(&self, fields: serde_json::Value) -> (String, String) {
        let mut s = lock(&self.state);
        s.person_accounts = true;
        let mut account = fields.clone();
        account["IsPersonAccount"] = serde_json::json!(true);
        let account_id = Self::store_record(&mut s, "Account", account, false);
        let mut contact = serde_json::json!({
            "FirstName": fields["FirstName"], "LastName": fields["LastName"],
            "Phone": fields["Phone"], "MobilePhone": fields["PersonMobilePhone"],
            "HomePhone": fields["PersonHomePhone"], "OtherPhone": fields["PersonOtherPhone"],
            "AccountId": account_id, "IsPersonAccount": true,
        });
        if let Some(modified) = fields.get("LastModifiedDate") {
            contact["LastModifiedDate"] = modified.clone();
        }
        let contact_id = Self::store_record(&mut s, "Contact", contact, false);
        if let Some(a) = s
            .records
            .iter_mut()
            .find(|r| r["Id"] == account_id.as_str())
        {
            a["PersonContactId"] = serde_json::json!(contact_id);
        }
        (account_id, contact_id)
    }

    /// Records of `object` (internal markers removed).
    pub fn records(&self, object: &str) -> Vec<serde_json::Value> {
        lock(&self.state)
            .records
            .iter()
            .filter(|r| r["attributes"]["type"] == object)
            .map(|r| {
                let mut r = r.clone();
                if let Some(m) = r.as_object_mut() {
                    m.remove("_hidden");
                }
                r
            })
            .collect()
    }
    /// New Contacts and Leads are not searchable until `index_now`.
    pub fn set_search_lag(&self, on: bool) {
        lock(&self.state).search_lag = on;
    }
    /// Index every record.
    pub fn index_now(&self) {
        for r in lock(&self.state).records.iter_mut() {
            if let Some(m) = r.as_object_mut() {
                m.remove("_hidden");
            }
        }
    }
    /// The decoded `q` of every search so far.
    pub fn searches(&self) -> Vec<String> {
        lock(&self.state).searches.clone()
    }
    /// The decoded `q` of every query so far.
    pub fn queries(&self) -> Vec<String> {
        lock(&self.state).queries.clone()
    }
    /// Make the next Task creates fail like this, in order.
    pub fn fail_task_creates(&self, faults: &[TaskFault]) {
        lock(&self.state).task_faults.extend(faults.iter().copied());
    }
    /// Delay every REST answer (really sleeping).
    pub fn set_rest_delay_ms(&self, ms: u64) {
        lock(&self.state).rest_delay_ms = ms;
    }

    /// SOSL over phone fields: the digits of the term against the digits of
    /// each phone field, equal or one ending with the other (7+ digits),
    /// ignoring leading zeros, as Salesforce's phone search does.
    fn search(s: &mut SfState, q: &str) -> http_fetch::Response {
        s.searches.push(q.to_string());
        let Some(rest) = q.strip_prefix("FIND {") else {
            return response(
                400,
                r#"[{"message":"malformed","errorCode":"MALFORMED_SEARCH"}]"#,
            );
        };
        let mut term = String::new();
        let mut chars = rest.chars();
        let mut closed = false;
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some(e) => term.push(e),
                    None => break,
                },
                '}' => {
                    closed = true;
                    break;
                }
                '+' | '-' | '(' | ')' | '&' | '|' | '!' | '{' | '[' | ']' | '^' | '"' | '~'
                | '*' | '?' | ':' | '\'' => {
                    // Unescaped reserved characters are operators.
                    return response(
                        400,
                        r#"[{"message":"unescaped reserved character","errorCode":"MALFORMED_SEARCH"}]"#,
                    );
                }
                c => term.push(c),
            }
        }
        if !closed {
            return response(
                400,
                r#"[{"message":"no closing brace","errorCode":"MALFORMED_SEARCH"}]"#,
            );
        }
        const PERSON_FIELDS: [&str; 5] = [
            "IsPersonAccount",
            "PersonContactId",
            "PersonMobilePhone",
            "PersonHomePhone",
            "PersonOtherPhone",
        ];
        let person_accounts = s.person_accounts;
        if !person_accounts && let Some(field) = PERSON_FIELDS.iter().find(|f| q.contains(*f)) {
            return response(
                400,
                &serde_json::json!([{"message": format!("No such column '{field}' on entity 'Account'. If you are attempting to use a custom field, be sure to append the '__c' after the custom field name."), "errorCode": "INVALID_FIELD"}]).to_string(),
            );
        }
        let wanted: String = term.chars().filter(char::is_ascii_digit).collect();
        let hits: Vec<serde_json::Value> = ["Contact", "Lead", "Account"]
            .iter()
            .flat_map(|object| {
                s.records
                    .iter()
                    .filter(move |r| r["attributes"]["type"] == *object)
                    .filter(|r| r.get("_hidden").is_none())
                    .filter(|r| r["IsConverted"] != true)
                    .filter(|r| {
                        [
                            "Phone",
                            "MobilePhone",
                            "OtherPhone",
                            "HomePhone",
                            "PersonMobilePhone",
                            "PersonHomePhone",
                            "PersonOtherPhone",
                        ]
                        .iter()
                        .any(|f| r[*f].as_str().is_some_and(|p| phone_matches(p, &wanted)))
                    })
                    .map(move |r| {
                        let mut out = serde_json::json!({
                            "attributes": r["attributes"], "Id": r["Id"], "Name": r["Name"],
                            "Phone": r["Phone"], "LastModifiedDate": r["LastModifiedDate"],
                        });
                        if *object == "Contact" {
                            out["AccountId"] = r["AccountId"].clone();
                        }
                        if person_accounts && *object != "Lead" {
                            out["IsPersonAccount"] =
                                serde_json::json!(r["IsPersonAccount"] == true);
                        }
                        if person_accounts && *object == "Account" {
                            for f in &PERSON_FIELDS[1..] {
                                out[*f] = r[*f].clone();
                            }
                        }
                        out
                    })
            })
            .collect();
        response(200, &serde_json::json!({"searchRecords": hits}).to_string())
    }

    /// `SELECT Id FROM Task WHERE CallObject = '...'`.
    fn task_query(s: &mut SfState, q: &str) -> Option<http_fetch::Response> {
        let rest = q.strip_prefix("SELECT Id FROM Task WHERE CallObject = '")?;
        s.queries.push(q.to_string());
        let mut value = String::new();
        let mut chars = rest.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => value.extend(chars.next()),
                '\'' => break,
                c => value.push(c),
            }
        }
        let rows: Vec<serde_json::Value> = s
            .records
            .iter()
            .filter(|r| r["attributes"]["type"] == "Task" && r["CallObject"] == value.as_str())
            .map(|r| serde_json::json!({"attributes": r["attributes"], "Id": r["Id"]}))
            .take(1)
            .collect();
        Some(response(
            200,
            &serde_json::json!({"totalSize": rows.len(), "done": true, "records": rows})
                .to_string(),
        ))
    }

    /// `SELECT Description FROM Task WHERE Id = '...'` (after-call work).
    fn description_query(s: &mut SfState, q: &str) -> Option<http_fetch::Response> {
        let rest = q.strip_prefix("SELECT Description FROM Task WHERE Id = '")?;
        s.queries.push(q.to_string());
        let id: String = rest.chars().take_while(|c| *c != '\'').collect();
        let rows: Vec<serde_json::Value> = s
            .records
            .iter()
            .filter(|r| r["attributes"]["type"] == "Task" && r["Id"] == id.as_str())
            .map(|r| serde_json::json!({"attributes": r["attributes"], "Description": r["Description"]}))
            .take(1)
            .collect();
        Some(response(
            200,
            &serde_json::json!({"totalSize": rows.len(), "done": true, "records": rows})
                .to_string(),
        ))
    }

    /// `SELECT Id FROM Case WHERE {ContactId|AccountId} = '...' AND
    /// IsClosed = false ORDER BY CreatedDate DESC LIMIT 1`: the newest
    /// open Case (records are kept in creation order).
    fn case_query(s: &mut SfState, q: &str) -> Option<http_fetch::Response> {
        let rest = q.strip_prefix("SELECT Id FROM Case WHERE ")?;
        let (field, rest) = rest.split_once(" = '")?;
        let id: String = rest.chars().take_while(|c| *c != '\'').collect();
        if !q.ends_with("' AND IsClosed = false ORDER BY CreatedDate DESC LIMIT 1") {
            return None;
        }
        s.queries.push(q.to_string());
        let rows: Vec<serde_json::Value> = s
            .records
            .iter()
            .rev()
            .filter(|r| r["attributes"]["type"] == "Case" && r[field] == id.as_str())
            .filter(|r| r["IsClosed"] != true)
            .map(|r| serde_json::json!({"attributes": r["attributes"], "Id": r["Id"]}))
            .take(1)
            .collect();
        Some(response(
            200,
            &serde_json::json!({"totalSize": rows.len(), "done": true, "records": rows})
                .to_string(),
        ))
    }

    /// PATCH `sobjects/Task/{id}`: the fields replaced, 204.
    fn update(s: &mut SfState, id: &str, body: &str) -> http_fetch::Response {
        let Ok(serde_json::Value::Object(fields)) = serde_json::from_str(body) else {
            return response(
                400,
                r#"[{"message":"bad json","errorCode":"JSON_PARSER_ERROR"}]"#,
            );
        };
        let Some(record) = s
            .records
            .iter_mut()
            .find(|r| r["attributes"]["type"] == "Task" && r["Id"] == id)
        else {
            return response(404, r#"[{"message":"not found","errorCode":"NOT_FOUND"}]"#);
        };
        for (k, v) in fields {
            record[k.as_str()] = v;
        }
        s.patches += 1;
        response(204, "")
    }

    /// Successful PATCHes of Tasks so far.
    pub fn patches(&self) -> u32 {
        lock(&self.state).patches
    }

    /// `SELECT Name FROM Account WHERE Id = '...'`.
    fn account_query(s: &mut SfState, q: &str) -> Option<http_fetch::Response> {
        let rest = q.strip_prefix("SELECT Name FROM Account WHERE Id = '")?;
        s.queries.push(q.to_string());
        let id: String = rest.chars().take_while(|c| *c != '\'').collect();
        let rows: Vec<serde_json::Value> = s
            .records
            .iter()
            .filter(|r| r["attributes"]["type"] == "Account" && r["Id"] == id.as_str())
            .map(|r| serde_json::json!({"attributes": r["attributes"], "Name": r["Name"]}))
            .take(1)
            .collect();
        Some(response(
            200,
            &serde_json::json!({"totalSize": rows.len(), "done": true, "records": rows})
                .to_string(),
        ))
    }

    /// POST `sobjects/{object}/`.
    fn create(
        s: &mut SfState,
        object: &str,
        body: &str,
    ) -> Result<http_fetch::Response, http_fetch::Error> {
        let Ok(fields) = serde_json::from_str::<serde_json::Value>(body) else {
            return Ok(response(
                400,
                r#"[{"message":"bad json","errorCode":"JSON_PARSER_ERROR"}]"#,
            ));
        };
        let required: &[&str] = match object {
            "Contact" => &["LastName"],
            "Lead" => &["LastName", "Company"],
            "Account" => &["Name"],
            _ => &[],
        };
        for f in required {
            if fields[*f].as_str().is_none_or(str::is_empty) {
                return Ok(response(
                    400,
                    &serde_json::json!([{"message": format!("Required fields are missing: [{f}]"), "errorCode": "REQUIRED_FIELD_MISSING", "fields": [f]}]).to_string(),
                ));
            }
        }
        let fault = if object == "Task" {
            s.task_faults.pop_front()
        } else {
            None
        };
        if fault == Some(TaskFault::Unavailable) {
            return Ok(response(
                503,
                r#"[{"message":"down","errorCode":"SERVER_UNAVAILABLE"}]"#,
            ));
        }
        let hidden = s.search_lag && matches!(object, "Contact" | "Lead");
        let id = Self::store_record(s, object, fields, hidden);
        match fault {
            Some(TaskFault::StoredThen500) => Ok(response(
                500,
                r#"[{"message":"internal error","errorCode":"UNKNOWN_EXCEPTION"}]"#,
            )),
            Some(TaskFault::StoredThenTimeout) => Err(http_fetch::Error::Timeout),
            _ => Ok(response(
                201,
                &serde_json::json!({"id": id, "success": true, "errors": []}).to_string(),
            )),
        }
    }

    pub fn refresh_token_is_live(&self, token: &str) -> bool {
        lock(&self.state).refresh.contains(token)
    }

    /// The org's API use: `used` requests of `limit` so far. From now on
    /// every REST answer counts one and says the figures, as Salesforce's
    /// `Sforce-Limit-Info: api-usage=USED/MAX`, and `limits/` answers them.
    pub fn set_api_usage(&self, used: u64, limit: u64) {
        lock(&self.state).api_usage = Some((used, limit));
    }

    /// The HTTP side; REST answers carry the API use when it is set.
    pub fn handle(
        &self,
        req: &http_fetch::Request,
    ) -> Result<http_fetch::Response, http_fetch::Error> {
        let rest = req
            .url
            .strip_prefix(&format!("{INSTANCE}/services/data/v67.0/"))
            .map(str::to_string);
        let Some(path) = rest else {
            return self.answer(req);
        };
        let counted = {
            let mut s = lock(&self.state);
            s.api_usage.as_mut().map(|(used, limit)| {
                *used += 1;
                (*used, *limit)
            })
        };
        let Some((used, limit)) = counted else {
            return self.answer(req);
        };
        let mut answer = if path == "limits/" {
            response(
                200,
                &serde_json::json!({"DailyApiRequests": {"Max": limit, "Remaining": limit.saturating_sub(used)}})
                    .to_string(),
            )
        } else {
            self.answer(req)?
        };
        answer.headers.push(http_fetch::Header {
            name: "Sforce-Limit-Info".into(),
            value: format!("api-usage={used}/{limit}"),
        });
        Ok(answer)
    }

    fn answer(&self, req: &http_fetch::Request) -> Result<http_fetch::Response, http_fetch::Error> {
        let body = req
            .body
            .as_deref()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default();
        let form: BTreeMap<String, String> = url::form_urlencoded::parse(body.as_bytes())
            .into_owned()
            .collect();
        let bearer = req
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("authorization"))
            .and_then(|h| h.value.strip_prefix("Bearer "))
            .map(str::to_string);
        let url = req.url.as_str();
        if url == format!("{LOGIN}/services/oauth2/token") {
            let delay = lock(&self.state).token_delay_ms;
            if delay > 0 {
                std::thread::sleep(std::time::Duration::from_millis(delay));
            }
            return Ok(self.token(&form));
        }
        if url == format!("{LOGIN}/services/oauth2/revoke") {
            let token = form.get("token").cloned().unwrap_or_default();
            let mut s = lock(&self.state);
            let known = s.refresh.remove(&token) || s.access.remove(&token);
            s.revoked.push(token);
            return Ok(if known {
                response(200, "")
            } else {
                oauth_error("invalid_token", "invalid token")
            });
        }
        if let Some(user) = url.strip_prefix(&format!("{LOGIN}/id/{ORG}/")) {
            let s = lock(&self.state);
            let live = bearer.is_some_and(|b| s.access.contains(&b));
            let username = if user == USER {
                USERNAME.to_string()
            } else {
                format!("{user}@example.org")
            };
            return Ok(if live {
                response(
                    200,
                    &serde_json::json!({
                        "id": url, "user_id": user, "organization_id": ORG,
                        "username": username, "display_name": "Ada Admin",
                        "email": "ada@example.org", "nick_name": null,
                        "active": !s.inactive.contains(user),
                    })
                    .to_string(),
                )
            } else {
                response(403, "Bad_OAuth_Token")
            });
        }
        if let Some(path) = url.strip_prefix(&format!("{INSTANCE}/services/data/v67.0/")) {
            let mut s = lock(&self.state);
            if !bearer.is_some_and(|b| s.access.contains(&b)) {
                return Ok(response(
                    401,
                    r#"[{"message":"Session expired or invalid","errorCode":"INVALID_SESSION_ID"}]"#,
                ));
            }
            if s.rest_delay_ms > 0 {
                let ms = s.rest_delay_ms;
                drop(s);
                std::thread::sleep(std::time::Duration::from_millis(ms));
                s = lock(&self.state);
            }
            if let Some((status, body)) = s.rest_script.pop_front() {
                return Ok(response(status, &body));
            }
            let q = || {
                path.split_once("?q=")
                    .map(|(_, q)| {
                        url::form_urlencoded::parse(format!("q={q}").as_bytes())
                            .map(|(_, v)| v.into_owned())
                            .next()
                            .unwrap_or_default()
                    })
                    .unwrap_or_default()
            };
            if path.starts_with("search/?q=") {
                return Ok(Self::search(&mut s, &q()));
            }
            if path.starts_with("query?q=")
                && let Some(answer) = Self::task_query(&mut s, &q())
            {
                return Ok(answer);
            }
            if path.starts_with("query?q=")
                && let Some(answer) = Self::account_query(&mut s, &q())
            {
                return Ok(answer);
            }
            if path.starts_with("query?q=")
                && let Some(answer) = Self::description_query(&mut s, &q())
            {
                return Ok(answer);
            }
            if path.starts_with("query?q=")
                && let Some(answer) = Self::case_query(&mut s, &q())
            {
                return Ok(answer);
            }
            if req.method == Method::Patch
                && let Some(id) = path.strip_prefix("sobjects/Task/")
            {
                let id = id.to_string();
                return Ok(Self::update(&mut s, &id, &body));
            }
            if req.method == Method::Post
                && let Some(object) = path
                    .strip_prefix("sobjects/")
                    .and_then(|p| p.strip_suffix('/'))
                    .filter(|o| matches!(*o, "Task" | "Contact" | "Lead" | "Account"))
            {
                let object = object.to_string();
                return Self::create(&mut s, &object, &body);
            }
            if let Some(page) = Self::user_page(&mut s, req, path) {
                return Ok(page);
            }
            return Ok(if path.starts_with("query?") {
                response(
                    200,
                    r#"{"totalSize":3,"done":false,"nextRecordsUrl":"/services/data/v67.0/query/01gNEXT-2","records":[{"Id":"1"},{"Id":"2"}]}"#,
                )
            } else if path == "query/01gNEXT-2" {
                response(200, r#"{"totalSize":3,"done":true,"records":[{"Id":"3"}]}"#)
            } else {
                response(
                    200,
                    &serde_json::json!({"ok": true, "path": path}).to_string(),
                )
            });
        }
        Err(http_fetch::Error::Unreachable(format!(
            "the fake Salesforce has no {url}"
        )))
    }

    /// A page of users for a User query or one of its locators.
    fn user_page(
        s: &mut SfState,
        req: &http_fetch::Request,
        path: &str,
    ) -> Option<http_fetch::Response> {
        let users = s.users.clone()?;
        if let Some(since) = path
            .strip_prefix("query?")
            .filter(|_| path.contains("%20FROM%20User%20"))
            .and_then(changed_since)
        {
            // The refresh's query: the users changed after `since`, oldest
            // first, in one page (or the first page and a locator the fake
            // does not serve, which the plugin must not follow).
            let stamp = |u: &serde_json::Value| {
                u["SystemModstamp"]
                    .as_str()
                    .and_then(crate::time::parse_datetime)
            };
            let mut changed: Vec<&serde_json::Value> = users
                .iter()
                .filter(|u| stamp(u).is_some_and(|t| t > since))
                .collect();
            changed.sort_by_key(|u| stamp(u));
            s.user_pages += 1;
            let end = changed.len().min(2000);
            let mut page = serde_json::json!({
                "totalSize": changed.len(),
                "done": end == changed.len(),
                "records": &changed[..end],
            });
            if end < changed.len() {
                page["nextRecordsUrl"] =
                    serde_json::Value::String("/services/data/v67.0/query/01gCHANGES-2000".into());
            }
            return Some(response(200, &page.to_string()));
        }
        let offset = if path.starts_with("query?") && path.contains("%20FROM%20User%20") {
            0
        } else {
            // Locators name the snapshot's length too, so a replaced user
            // list does not shift an ongoing query.
            let rest = path.strip_prefix("query/01gUSERS-")?;
            match rest.split_once('-').map(|(o, _)| o.parse::<usize>()) {
                Some(Ok(o)) if o <= users.len() => o,
                _ => {
                    return Some(response(
                        400,
                        r#"[{"message":"invalid query locator","errorCode":"INVALID_QUERY_LOCATOR"}]"#,
                    ));
                }
            }
        };
        let asked = req
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("sforce-query-options"))
            .and_then(|h| h.value.trim().strip_prefix("batchSize="))
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap_or(2000)
            .clamp(200, 2000);
        let batch = s.user_page_size.map_or(asked, |max| asked.min(max));
        let end = (offset + batch).min(users.len());
        s.user_pages += 1;
        let mut page = serde_json::json!({
            "totalSize": users.len(),
            "done": end >= users.len(),
            "records": &users[offset..end],
        });
        if end < users.len() {
            page["nextRecordsUrl"] = serde_json::Value::String(format!(
                "/services/data/v67.0/query/01gUSERS-{end}-{}",
                users.len()
            ));
        }
        Some(response(200, &page.to_string()))
    }

    fn token(&self, form: &BTreeMap<String, String>) -> http_fetch::Response {
        let get = |k: &str| form.get(k).cloned().unwrap_or_default();
        let mut s = lock(&self.state);
        if get("client_id") != KEY {
            return oauth_error("invalid_client_id", "client identifier invalid");
        }
        match get("grant_type").as_str() {
            "authorization_code" => {
                let Some((challenge, redirect)) = s.codes.get(&get("code")).cloned() else {
                    return oauth_error("invalid_grant", "invalid authorization code");
                };
                if get("client_secret") != SECRET {
                    return oauth_error("invalid_client", "invalid client credentials");
                }
                if get("redirect_uri") != redirect || redirect != s.callback {
                    return oauth_error(
                        "redirect_uri_mismatch",
                        "redirect_uri must match configuration",
                    );
                }
                if crate::oauth::pkce_challenge(&get("code_verifier")) != challenge {
                    return oauth_error("invalid_grant", "invalid code verifier");
                }
                let user = s
                    .code_users
                    .get(&get("code"))
                    .cloned()
                    .unwrap_or_else(|| USER.to_string());
                if s.inactive_at_token.contains(&user) {
                    return oauth_error("invalid_grant", "inactive user");
                }
                s.codes.remove(&get("code"));
                s.code_grants += 1;
                let with_refresh = !s.no_refresh;
                Self::mint(&mut s, with_refresh, &user)
            }
            "refresh_token" => {
                if get("client_secret") != SECRET {
                    return oauth_error("invalid_client", "invalid client credentials");
                }
                let rt = get("refresh_token");
                if !s.refresh.contains(&rt) {
                    return oauth_error("invalid_grant", "expired access/refresh token");
                }
                s.refresh_grants += 1;
                if s.rotate {
                    s.refresh.remove(&rt);
                }
                let rotate = s.rotate;
                Self::mint(&mut s, rotate, USER)
            }
            _ => oauth_error("unsupported_grant_type", "grant type not supported"),
        }
    }

    fn mint(s: &mut SfState, with_refresh: bool, user: &str) -> http_fetch::Response {
        s.counter += 1;
        let access = format!("{ORG}!AQ0access{}", s.counter);
        s.access.insert(access.clone());
        s.issued_access.push(access.clone());
        let id = format!("{LOGIN}/id/{ORG}/{user}");
        let issued_at = "1700000000000";
        let secret = if s.bad_signature {
            "not-the-secret"
        } else {
            SECRET
        };
        let mut answer = serde_json::json!({
            "access_token": access,
            "signature": sign(secret, &id, issued_at),
            "scope": crate::oauth::SCOPES,
            "instance_url": INSTANCE,
            "id": id,
            "token_type": "Bearer",
            "issued_at": issued_at,
        });
        if with_refresh {
            let refresh = format!("5Aep861refresh{}", s.counter);
            s.refresh.insert(refresh.clone());
            s.issued_refresh.push(refresh.clone());
            answer["refresh_token"] = serde_json::Value::String(refresh);
        }
        response(200, &answer.to_string())
    }
}

fn digits(s: &str) -> String {
    s.chars().filter(char::is_ascii_digit).collect()
}

/// Digit comparison as Salesforce's phone search (and the emulator) does it.
pub fn phone_matches(stored: &str, wanted: &str) -> bool {
    let s = digits(stored);
    let (s_trim, w_trim) = (s.trim_start_matches('0'), wanted.trim_start_matches('0'));
    [(s.as_str(), wanted), (s_trim, w_trim)]
        .into_iter()
        .any(|(a, b)| {
            if a.is_empty() || b.is_empty() {
                return false;
            }
            let (short, long) = if a.len() < b.len() { (a, b) } else { (b, a) };
            a == b || (short.len() >= 7 && long.ends_with(short))
        })
}

/// The time after which a users query asks for changes
/// (`... WHERE SystemModstamp > <datetime> ...` in its `q`).
fn changed_since(query: &str) -> Option<u64> {
    let q = url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "q")
        .map(|(_, v)| v.into_owned())?;
    let rest = q.split("SystemModstamp > ").nth(1)?;
    crate::time::parse_datetime(rest.split_whitespace().next()?)
}

/// A User record as the REST API sends it: id `005` + `i`, the given name
/// and e-mail, realistic other fields.
pub fn sf_user(i: usize, name: &str, email: Option<&str>) -> serde_json::Value {
    let id = format!("005{i:012}AAA");
    serde_json::json!({
        "attributes": {"type": "User", "url": format!("/services/data/v67.0/sobjects/User/{id}")},
        "Id": id,
        "Name": name,
        "Username": format!("user{i}@acme.example.org"),
        "Email": email,
        "IsActive": true,
        "UserType": "Standard",
        "Title": "Account Executive",
        "Department": "Sales EMEA",
        "Phone": "+1 415 555 0100",
        "MobilePhone": "+1 415 555 0199",
        "Extension": format!("{}", 1000 + i % 9000),
        "LastModifiedDate": "2024-05-01T12:34:56.000+0000",
    })
}

/// The id `sf_user(i, ..)` gets.
pub fn sf_user_id(i: usize) -> String {
    format!("005{i:012}AAA")
}
