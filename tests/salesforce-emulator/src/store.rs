//! The org's data: tables of records, with Salesforce's write validation.
//!
//! In an org with Person Accounts, an Account written with a `LastName` is
//! a person account: its `Name` is its first and last name,
//! `IsPersonAccount` is true, and it has a person contact, a Contact of the
//! same person (`IsPersonAccount` true, `AccountId` the account) whose id
//! is the account's `PersonContactId` and whose names, e-mail and phones
//! follow the account's (`Phone`, `PersonMobilePhone` as `MobilePhone`,
//! `PersonHomePhone` as `HomePhone`, `PersonOtherPhone` as `OtherPhone`).

use std::collections::HashMap;
use std::time::Instant;

use serde_json::{Map, Value};

use crate::error::ApiError;
use crate::ids;
use crate::schema::{FieldType, ObjectSchema, Schemas, schemas};
use crate::time;

/// One stored record: field values in schema order.
#[derive(Debug, Clone)]
pub struct Record {
    pub values: Vec<Value>,
    /// SOSL ignores the record until then (search-index lag).
    pub searchable_at: Option<Instant>,
}

impl Record {
    pub fn id(&self) -> &str {
        self.values.first().and_then(Value::as_str).unwrap_or("")
    }

    pub fn get(&self, i: usize) -> &Value {
        self.values.get(i).unwrap_or(&Value::Null)
    }

    pub fn is_searchable(&self, now: Instant) -> bool {
        self.searchable_at.is_none_or(|t| t <= now)
    }
}

/// All records of one sObject type.
#[derive(Debug, Clone)]
pub struct Table {
    pub schema: &'static ObjectSchema,
    pub records: Vec<Record>,
    by_id: HashMap<String, usize>,
    next_id: u64,
}

impl Table {
    fn new(schema: &'static ObjectSchema) -> Table {
        Table {
            schema,
            records: Vec::new(),
            by_id: HashMap::new(),
            next_id: 1,
        }
    }

    /// The same records under `schema` (another org setting's schema of
    /// the object): values kept by field name, new fields empty (`false`
    /// for a boolean), fields `schema` lacks dropped.
    fn reshape(&mut self, schema: &'static ObjectSchema) {
        let old = self.schema;
        for rec in &mut self.records {
            rec.values = schema
                .fields
                .iter()
                .map(|f| match old.field_index(f.name) {
                    Some(i) => rec.get(i).clone(),
                    None if f.ftype == FieldType::Boolean => Value::Bool(false),
                    None => Value::Null,
                })
                .collect();
        }
        self.schema = schema;
    }

    /// Record position by (15- or 18-character) id.
    pub fn position(&self, id: &str) -> Option<usize> {
        let id = ids::normalize(id)?;
        self.by_id.get(&id).copied()
    }

    pub fn get(&self, id: &str) -> Option<&Record> {
        self.position(id).map(|i| &self.records[i])
    }

    /// Every record as JSON (with `attributes`).
    pub fn to_json(&self, version: &str) -> Vec<Value> {
        self.records
            .iter()
            .map(|r| record_json(self.schema, r, None, version))
            .collect()
    }
}

/// A record as the REST API shows it: `attributes` first, then the fields
/// (all of them, or the given field indexes).
pub fn record_json(
    schema: &ObjectSchema,
    rec: &Record,
    fields: Option<&[usize]>,
    version: &str,
) -> Value {
    let mut m = Map::new();
    m.insert(
        "attributes".into(),
        serde_json::json!({
            "type": schema.name,
            "url": format!("/services/data/v{version}/sobjects/{}/{}", schema.name, rec.id()),
        }),
    );
    match fields {
        Some(fs) => {
            for &i in fs {
                m.insert(schema.fields[i].name.into(), rec.get(i).clone());
            }
        }
        None => {
            for (i, f) in schema.fields.iter().enumerate() {
                m.insert(f.name.into(), rec.get(i).clone());
            }
        }
    }
    Value::Object(m)
}

/// Who writes, when, and with which privileges.
#[derive(Debug, Clone)]
pub struct WriteCtx {
    pub user_id: String,
    pub now_ms: i64,
    /// Seeding: system fields (Id, dates, IsActive...) may be set.
    pub system: bool,
    pub searchable_at: Option<Instant>,
}

/// The org: one table per sObject type.
#[derive(Debug, Clone)]
pub struct Org {
    pub org_id: String,
    pub org_name: String,
    /// Whether the org has Person Accounts (its tables use
    /// [`crate::schema::PERSON_SCHEMAS`]).
    pub person_accounts: bool,
    pub users: Table,
    pub contacts: Table,
    pub leads: Table,
    pub accounts: Table,
    pub tasks: Table,
    pub cases: Table,
}

fn field_err(code: &str, msg: String, field: &str) -> ApiError {
    ApiError::with_fields(code, msg, vec![field.to_string()])
}

fn parser_error(type_name: &str, v: &Value) -> ApiError {
    let (kind, text) = match v {
        Value::String(s) => ("VALUE_STRING", s.clone()),
        Value::Bool(b) => (if *b { "VALUE_TRUE" } else { "VALUE_FALSE" }, b.to_string()),
        Value::Number(n) => ("VALUE_NUMBER_INT", n.to_string()),
        Value::Array(_) => ("START_ARRAY", "[".into()),
        _ => ("START_OBJECT", "{".into()),
    };
    ApiError::new(
        "JSON_PARSER_ERROR",
        format!(
            "Cannot deserialize instance of {type_name} from {kind} value {text} or request may be missing a required field"
        ),
    )
}

impl Org {
    pub fn new(org_id: String, org_name: String) -> Org {
        let s = schemas(false);
        Org {
            org_id,
            org_name,
            person_accounts: false,
            users: Table::new(&s.user),
            contacts: Table::new(&s.contact),
            leads: Table::new(&s.lead),
            accounts: Table::new(&s.account),
            tasks: Table::new(&s.task),
            cases: Table::new(&s.case),
        }
    }

    /// The schemas of this org (with or without Person Accounts).
    pub fn schemas(&self) -> &'static Schemas {
        schemas(self.person_accounts)
    }

    /// Turns Person Accounts on or off: every table takes that setting's
    /// schema, keeping its records (in Salesforce they cannot be turned
    /// off once on; tests may).
    pub fn set_person_accounts(&mut self, on: bool) {
        self.person_accounts = on;
        let s = schemas(on);
        for (table, schema) in [
            (&mut self.users, &s.user),
            (&mut self.contacts, &s.contact),
            (&mut self.leads, &s.lead),
            (&mut self.accounts, &s.account),
            (&mut self.tasks, &s.task),
            (&mut self.cases, &s.case),
        ] {
            table.reshape(schema);
        }
    }

    /// Table by case-insensitive object name.
    pub fn table(&self, object: &str) -> Option<&Table> {
        self.tables()
            .into_iter()
            .find(|t| t.schema.name.eq_ignore_ascii_case(object))
    }

    pub fn table_mut(&mut self, object: &str) -> Option<&mut Table> {
        [
            &mut self.users,
            &mut self.contacts,
            &mut self.leads,
            &mut self.accounts,
            &mut self.tasks,
            &mut self.cases,
        ]
        .into_iter()
        .find(|t| t.schema.name.eq_ignore_ascii_case(object))
    }

    pub fn tables(&self) -> [&Table; 6] {
        [
            &self.users,
            &self.contacts,
            &self.leads,
            &self.accounts,
            &self.tasks,
            &self.cases,
        ]
    }

    /// The table an id belongs to, by key prefix.
    pub fn table_for_id(&self, id: &str) -> Option<&Table> {
        let p = ids::key_prefix(id);
        self.tables().into_iter().find(|t| t.schema.key_prefix == p)
    }

    /// A user by username (case-insensitive).
    pub fn user_by_username(&self, username: &str) -> Option<&Record> {
        let i = self.users.schema.field_index("Username")?;
        self.users.records.iter().find(|r| {
            r.get(i)
                .as_str()
                .is_some_and(|u| u.eq_ignore_ascii_case(username))
        })
    }

    /// Whether a user exists and is active.
    pub fn user_active(&self, id: &str) -> Option<bool> {
        let i = self.users.schema.field_index("IsActive")?;
        self.users
            .get(id)
            .map(|r| r.get(i).as_bool().unwrap_or(false))
    }

    /// Checks and converts one field value for a write.
    fn coerce(
        &self,
        schema: &ObjectSchema,
        fi: usize,
        v: &Value,
        ctx: &WriteCtx,
    ) -> Result<Value, ApiError> {
        let f = &schema.fields[fi];
        if v.is_null() {
            if f.required {
                return Err(ApiError::with_fields(
                    "REQUIRED_FIELD_MISSING",
                    format!("Required fields are missing: [{}]", f.name),
                    vec![f.name.into()],
                ));
            }
            return Ok(Value::Null);
        }
        let as_text = || -> Result<String, ApiError> {
            match v {
                Value::String(s) => Ok(s.clone()),
                Value::Number(n) => Ok(n.to_string()),
                Value::Bool(b) => Ok(b.to_string()),
                _ => Err(parser_error("String", v)),
            }
        };
        match f.ftype {
            FieldType::Boolean => match v {
                Value::Bool(b) => Ok(Value::Bool(*b)),
                Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(Value::Bool(true)),
                Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(Value::Bool(false)),
                _ => Err(parser_error("boolean", v)),
            },
            FieldType::Int => match v {
                Value::Number(n) if n.is_i64() => Ok(v.clone()),
                Value::Number(n) => match n.as_f64() {
                    Some(x) if x.fract() == 0.0 => Ok(Value::from(x as i64)),
                    _ => Err(parser_error("int", v)),
                },
                Value::String(s) => s
                    .trim()
                    .parse::<i64>()
                    .map(Value::from)
                    .map_err(|_| parser_error("int", v)),
                _ => Err(parser_error("int", v)),
            },
            FieldType::Double => match v {
                Value::Number(_) => Ok(v.clone()),
                Value::String(s) => s
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .and_then(serde_json::Number::from_f64)
                    .map(Value::Number)
                    .ok_or_else(|| parser_error("double", v)),
                _ => Err(parser_error("double", v)),
            },
            FieldType::Date => {
                let s = v.as_str().ok_or_else(|| parser_error("date", v))?;
                let ms = time::parse_date(s)
                    .or_else(|| time::parse_datetime(s))
                    .ok_or_else(|| parser_error("date", v))?;
                Ok(Value::String(time::format_date(ms)))
            }
            FieldType::DateTime => {
                let s = v.as_str().ok_or_else(|| parser_error("datetime", v))?;
                let ms = time::parse_datetime(s)
                    .or_else(|| time::parse_date(s))
                    .ok_or_else(|| parser_error("datetime", v))?;
                Ok(Value::String(time::format_datetime(ms)))
            }
            FieldType::Reference | FieldType::Id => {
                let s = as_text()?;
                if s.is_empty() {
                    return Ok(Value::Null);
                }
                let Some(id) = ids::normalize(&s) else {
                    return Err(field_err(
                        "MALFORMED_ID",
                        format!("{}: id value of incorrect type: {s}", f.label),
                        f.name,
                    ));
                };
                if f.ftype == FieldType::Id {
                    return Ok(Value::String(id));
                }
                let target = self
                    .table_for_id(&id)
                    .filter(|t| f.reference_to.contains(&t.schema.name));
                let Some(target) = target else {
                    return Err(field_err(
                        "FIELD_INTEGRITY_EXCEPTION",
                        format!("{}: id value of incorrect type: {s}", f.label),
                        f.name,
                    ));
                };
                if target.get(&id).is_none() && !ctx.system {
                    return Err(ApiError::with_fields(
                        "INVALID_CROSS_REFERENCE_KEY",
                        "invalid cross reference id",
                        vec![],
                    ));
                }
                if f.name == "OwnerId" && self.user_active(&id) == Some(false) && !ctx.system {
                    return Err(ApiError::with_fields(
                        "INACTIVE_OWNER_OR_USER",
                        format!(
                            "operation performed with inactive user [{id}] as owner of {}",
                            schema.name.to_ascii_lowercase()
                        ),
                        vec![],
                    ));
                }
                Ok(Value::String(id))
            }
            _ => {
                let s = as_text()?;
                if s.chars().count() > f.length {
                    return Err(field_err(
                        "STRING_TOO_LONG",
                        format!(
                            "{}: data value too large: {s} (max length={})",
                            f.label, f.length
                        ),
                        f.name,
                    ));
                }
                if f.ftype == FieldType::Email && !s.is_empty() && !valid_email(&s) {
                    return Err(field_err(
                        "INVALID_EMAIL_ADDRESS",
                        format!("{}: invalid email address: {s}", f.label),
                        f.name,
                    ));
                }
                if f.restricted && !f.picklist.contains(&s.as_str()) {
                    return Err(field_err(
                        "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                        format!("{}: bad value for restricted picklist field: {s}", f.label),
                        f.name,
                    ));
                }
                if s.is_empty() && f.required {
                    return Err(ApiError::with_fields(
                        "REQUIRED_FIELD_MISSING",
                        format!("Required fields are missing: [{}]", f.name),
                        vec![f.name.into()],
                    ));
                }
                Ok(if s.is_empty() {
                    Value::Null
                } else {
                    Value::String(s)
                })
            }
        }
    }

    /// Validates the fields of a create or update; returns (index, value) pairs.
    fn validate(
        &self,
        schema: &ObjectSchema,
        fields: &Map<String, Value>,
        creating: bool,
        ctx: &WriteCtx,
    ) -> Result<Vec<(usize, Value)>, Vec<ApiError>> {
        // Unknown fields are reported first, as the JSON deserializer does.
        for key in fields.keys() {
            if key != "attributes" && schema.field_index(key).is_none() {
                return Err(vec![ApiError::new(
                    "INVALID_FIELD",
                    format!("No such column '{key}' on sobject of type {}", schema.name),
                )]);
            }
        }
        let mut out = Vec::with_capacity(fields.len());
        for (key, v) in fields {
            let Some(fi) = schema.field_index(key) else {
                continue;
            };
            let f = &schema.fields[fi];
            let allowed = ctx.system || if creating { f.createable } else { f.updateable };
            if !allowed {
                return Err(vec![ApiError::with_fields(
                    "INVALID_FIELD_FOR_INSERT_UPDATE",
                    format!(
                        "Unable to create/update fields: {}. Please check the security settings of this field and verify that it is read/write for your profile or permission set.",
                        f.name
                    ),
                    vec![f.name.into()],
                )]);
            }
            if creating && v.is_null() && f.required {
                continue; // reported below with every missing field
            }
            out.push((fi, self.coerce(schema, fi, v, ctx).map_err(|e| vec![e])?));
        }
        if creating {
            let missing: Vec<String> = schema
                .fields
                .iter()
                .enumerate()
                .filter(|(i, f)| f.required && !out.iter().any(|(j, v)| j == i && !v.is_null()))
                .map(|(_, f)| f.name.to_string())
                .collect();
            if !missing.is_empty() {
                return Err(vec![ApiError::with_fields(
                    "REQUIRED_FIELD_MISSING",
                    format!("Required fields are missing: [{}]", missing.join(", ")),
                    missing,
                )]);
            }
        }
        Ok(out)
    }

    /// Creates a record; returns its id.
    pub fn insert(
        &mut self,
        object: &str,
        fields: &Map<String, Value>,
        ctx: &WriteCtx,
    ) -> Result<String, Vec<ApiError>> {
        let schema = self.table(object).map(|t| t.schema).ok_or_else(|| {
            vec![ApiError::new(
                "NOT_FOUND",
                "The requested resource does not exist",
            )]
        })?;
        let person = self.is_person_write(schema, fields);
        let named;
        let fields = if person && fields.get("Name").is_none_or(Value::is_null) {
            // A person account's Name is its person's name.
            let mut with_name = fields.clone();
            with_name.insert("Name".into(), Value::String(person_name(fields)));
            named = with_name;
            &named
        } else {
            fields
        };
        let vals = self.validate(schema, fields, true, ctx)?;
        let table = self.table_mut(schema.name).ok_or_else(Vec::new)?;
        let mut values = vec![Value::Null; schema.fields.len()];
        for (i, f) in schema.fields.iter().enumerate() {
            if let Some(d) = f.default {
                values[i] = match f.ftype {
                    FieldType::Boolean => Value::Bool(d == "true"),
                    _ => Value::String(d.into()),
                };
            } else if f.ftype == FieldType::Boolean {
                values[i] = Value::Bool(false);
            }
        }
        let now = Value::String(time::format_datetime(ctx.now_ms));
        let user = Value::String(ctx.user_id.clone());
        for name in ["CreatedDate", "LastModifiedDate", "SystemModstamp"] {
            if let Some(i) = schema.field_index(name) {
                values[i] = now.clone();
            }
        }
        for name in ["CreatedById", "LastModifiedById", "OwnerId"] {
            if let Some(i) = schema.field_index(name) {
                values[i] = user.clone();
            }
        }
        for (i, v) in vals {
            values[i] = v;
        }
        let id = match values[0].as_str().and_then(ids::normalize) {
            Some(id) if ctx.system && !table.by_id.contains_key(&id) => id,
            _ => loop {
                let id = ids::make_id(schema.key_prefix, table.next_id);
                table.next_id += 1;
                if !table.by_id.contains_key(&id) {
                    break id;
                }
            },
        };
        values[0] = Value::String(id.clone());
        if person && let Some(i) = schema.field_index("IsPersonAccount") {
            values[i] = Value::Bool(true);
        }
        derive_fields(schema, &mut values);
        table.by_id.insert(id.clone(), table.records.len());
        table.records.push(Record {
            values,
            searchable_at: ctx.searchable_at,
        });
        if person {
            self.sync_person_contact(&id, ctx)?;
        }
        Ok(id)
    }

    /// Whether a write of `fields` to `schema` makes a person account: an
    /// Account with a `LastName`, in an org with Person Accounts.
    fn is_person_write(&self, schema: &ObjectSchema, fields: &Map<String, Value>) -> bool {
        self.person_accounts
            && schema.name == "Account"
            && fields.iter().any(|(k, v)| {
                k.eq_ignore_ascii_case("LastName") && v.as_str().is_some_and(|l| !l.is_empty())
            })
    }

    /// Create or update the person contact of the person account `id`
    /// from the account's names, e-mail and phones.
    fn sync_person_contact(&mut self, id: &str, ctx: &WriteCtx) -> Result<(), Vec<ApiError>> {
        let account = &self.schemas().account;
        let Some(rec) = self.accounts.get(id) else {
            return Ok(());
        };
        let value = |name: &str| {
            account
                .field_index(name)
                .map_or(Value::Null, |i| rec.get(i).clone())
        };
        if value("IsPersonAccount") != Value::Bool(true) {
            return Ok(());
        }
        let mut fields = Map::new();
        for (from, to) in [
            ("Salutation", "Salutation"),
            ("FirstName", "FirstName"),
            ("LastName", "LastName"),
            ("PersonEmail", "Email"),
            ("Phone", "Phone"),
            ("PersonMobilePhone", "MobilePhone"),
            ("PersonHomePhone", "HomePhone"),
            ("PersonOtherPhone", "OtherPhone"),
            ("OwnerId", "OwnerId"),
        ] {
            fields.insert(to.into(), value(from));
        }
        let existing = value("PersonContactId");
        let system = WriteCtx {
            system: true,
            ..ctx.clone()
        };
        if let Some(contact_id) = existing.as_str().filter(|c| self.contacts.get(c).is_some()) {
            let contact_id = contact_id.to_string();
            return self.update("Contact", &contact_id, &fields, &system);
        }
        fields.insert("AccountId".into(), Value::String(id.to_string()));
        fields.insert("IsPersonAccount".into(), Value::Bool(true));
        let contact_id = self.insert("Contact", &fields, &system)?;
        if let (Some(pos), Some(i)) = (
            self.accounts.position(id),
            account.field_index("PersonContactId"),
        ) {
            self.accounts.records[pos].values[i] = Value::String(contact_id);
        }
        Ok(())
    }

    /// Updates a record by id.
    pub fn update(
        &mut self,
        object: &str,
        id: &str,
        fields: &Map<String, Value>,
        ctx: &WriteCtx,
    ) -> Result<(), Vec<ApiError>> {
        let not_found = || {
            vec![ApiError::new(
                "NOT_FOUND",
                "The requested resource does not exist",
            )]
        };
        let table = self.table(object).ok_or_else(not_found)?;
        let schema = table.schema;
        let pos = table.position(id).ok_or_else(not_found)?;
        let vals = self.validate(schema, fields, false, ctx)?;
        let table = self.table_mut(schema.name).ok_or_else(not_found)?;
        let rec = &mut table.records[pos];
        for (i, v) in vals {
            rec.values[i] = v;
        }
        let now = Value::String(time::format_datetime(ctx.now_ms));
        for name in ["LastModifiedDate", "SystemModstamp"] {
            if let Some(i) = schema.field_index(name) {
                rec.values[i] = now.clone();
            }
        }
        if let Some(i) = schema.field_index("LastModifiedById") {
            rec.values[i] = Value::String(ctx.user_id.clone());
        }
        derive_fields(schema, &mut rec.values);
        if schema.name == "Account" && self.person_accounts {
            let id = id.to_string();
            self.sync_person_contact(&id, ctx)?;
        }
        Ok(())
    }
}

fn valid_email(s: &str) -> bool {
    match s.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !s.contains(' ')
        }
        None => false,
    }
}

/// A person's name from a write's `FirstName` and `LastName`.
fn person_name(fields: &Map<String, Value>) -> String {
    let part = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| v.as_str())
            .unwrap_or("")
            .trim()
            .to_string()
    };
    format!("{} {}", part("FirstName"), part("LastName"))
        .trim()
        .to_string()
}

/// Computed fields: `Name` from first and last names (a person account's
/// too), `IsClosed` of Tasks and Cases.
fn derive_fields(schema: &ObjectSchema, values: &mut [Value]) {
    let person_account = schema.name == "Account"
        && schema
            .field_index("IsPersonAccount")
            .is_some_and(|i| values[i] == Value::Bool(true));
    if (person_account || matches!(schema.name, "User" | "Contact" | "Lead"))
        && let (Some(n), Some(f), Some(l)) = (
            schema.field_index("Name"),
            schema.field_index("FirstName"),
            schema.field_index("LastName"),
        )
    {
        let first = values[f].as_str().unwrap_or("");
        let last = values[l].as_str().unwrap_or("");
        let name = if first.is_empty() {
            last.to_string()
        } else {
            format!("{first} {last}")
        };
        values[n] = Value::String(name);
    }
    if schema.name == "Task"
        && let (Some(c), Some(s)) = (schema.field_index("IsClosed"), schema.field_index("Status"))
    {
        values[c] = Value::Bool(values[s].as_str() == Some("Completed"));
    }
    if schema.name == "Case"
        && let (Some(c), Some(s)) = (schema.field_index("IsClosed"), schema.field_index("Status"))
    {
        values[c] = Value::Bool(values[s].as_str() == Some("Closed"));
    }
    if schema.name == "User"
        && let Some(a) = schema.field_index("Alias")
        && values[a].is_null()
        && let Some(l) = schema.field_index("LastName")
    {
        let alias: String = values[l]
            .as_str()
            .unwrap_or("user")
            .chars()
            .take(8)
            .collect();
        values[a] = Value::String(alias);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx() -> WriteCtx {
        WriteCtx {
            user_id: ids::make_id("005", 1),
            now_ms: 0,
            system: false,
            searchable_at: None,
        }
    }

    fn org_with_user() -> Org {
        let mut org = Org::new(ids::make_id("00D", 1), "Test".into());
        let sys = WriteCtx {
            system: true,
            ..ctx()
        };
        let fields =
            json!({"Username": "a@example.org", "LastName": "A", "Email": "a@example.org"});
        org.insert("User", fields.as_object().unwrap(), &sys)
            .unwrap();
        org
    }

    fn codes(r: Result<String, Vec<ApiError>>) -> String {
        r.unwrap_err()
            .iter()
            .map(|e| e.error_code.clone())
            .collect::<Vec<_>>()
            .join(",")
    }

    #[test]
    fn required_fields() {
        let mut org = org_with_user();
        let e = org
            .insert(
                "Lead",
                json!({"FirstName": "x"}).as_object().unwrap(),
                &ctx(),
            )
            .unwrap_err();
        assert_eq!(e[0].error_code, "REQUIRED_FIELD_MISSING");
        assert_eq!(
            e[0].fields.as_deref(),
            Some(&["LastName".to_string(), "Company".to_string()][..])
        );
        let id = org
            .insert(
                "Lead",
                json!({"LastName": "L", "Company": "C"})
                    .as_object()
                    .unwrap(),
                &ctx(),
            )
            .unwrap();
        assert!(id.starts_with("00Q"));
        let lead = org.leads.get(&id).unwrap();
        let status = org.leads.schema.field_index("Status").unwrap();
        assert_eq!(lead.get(status), "Open - Not Contacted");
    }

    #[test]
    fn cases_close_by_status_and_tasks_relate_to_them() {
        let mut org = org_with_user();
        let open = org
            .insert(
                "Case",
                json!({"Subject": "Broken"}).as_object().unwrap(),
                &ctx(),
            )
            .unwrap();
        assert!(open.starts_with("500"));
        let closed = org
            .insert(
                "Case",
                json!({"Subject": "Done", "Status": "Closed"})
                    .as_object()
                    .unwrap(),
                &ctx(),
            )
            .unwrap();
        let s = org.cases.schema;
        let is_closed = s.field_index("IsClosed").unwrap();
        assert_eq!(org.cases.get(&open).unwrap().get(is_closed), &json!(false));
        assert_eq!(org.cases.get(&closed).unwrap().get(is_closed), &json!(true));
        let task = org
            .insert(
                "Task",
                json!({"Subject": "Call", "Type": "Call", "WhatId": open})
                    .as_object()
                    .unwrap(),
                &ctx(),
            )
            .unwrap();
        let t = org.tasks.get(&task).unwrap();
        assert_eq!(
            t.get(org.tasks.schema.field_index("WhatId").unwrap()),
            &json!(open)
        );
        assert_eq!(t.get(org.tasks.schema.field_index("Type").unwrap()), "Call");
    }

    #[test]
    fn task_defaults_and_picklists() {
        let mut org = org_with_user();
        let id = org
            .insert(
                "Task",
                json!({"Subject": "Call"}).as_object().unwrap(),
                &ctx(),
            )
            .unwrap();
        let t = org.tasks.get(&id).unwrap();
        let s = org.tasks.schema;
        assert_eq!(t.get(s.field_index("Status").unwrap()), "Not Started");
        assert_eq!(t.get(s.field_index("Priority").unwrap()), "Normal");
        assert_eq!(
            t.get(s.field_index("OwnerId").unwrap()),
            &json!(ids::make_id("005", 1))
        );
        let bad = org.insert(
            "Task",
            json!({"CallType": "Sideways"}).as_object().unwrap(),
            &ctx(),
        );
        assert_eq!(codes(bad), "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST");
        let bad = org.insert(
            "Task",
            json!({"TaskSubtype": "Fax"}).as_object().unwrap(),
            &ctx(),
        );
        assert_eq!(codes(bad), "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST");
        let bad = org.insert("Task", json!({"Nope": 1}).as_object().unwrap(), &ctx());
        assert_eq!(codes(bad), "INVALID_FIELD");
        let bad = org.insert("Task", json!({"WhoId": "xyz"}).as_object().unwrap(), &ctx());
        assert_eq!(codes(bad), "MALFORMED_ID");
        let bad = org.insert(
            "Task",
            json!({"WhoId": ids::make_id("001", 5)})
                .as_object()
                .unwrap(),
            &ctx(),
        );
        assert_eq!(codes(bad), "FIELD_INTEGRITY_EXCEPTION");
        let bad = org.insert(
            "Task",
            json!({"WhoId": ids::make_id("003", 99)})
                .as_object()
                .unwrap(),
            &ctx(),
        );
        assert_eq!(codes(bad), "INVALID_CROSS_REFERENCE_KEY");
        let bad = org.insert(
            "Task",
            json!({"CallDurationInSeconds": "long"})
                .as_object()
                .unwrap(),
            &ctx(),
        );
        assert_eq!(codes(bad), "JSON_PARSER_ERROR");
        let bad = org.insert(
            "Task",
            json!({"Id": ids::make_id("00T", 1)}).as_object().unwrap(),
            &ctx(),
        );
        assert_eq!(codes(bad), "INVALID_FIELD_FOR_INSERT_UPDATE");
    }

    #[test]
    fn person_accounts_are_fields_only_in_an_org_with_them() {
        let mut org = org_with_user();
        let obj = |v: Value| v.as_object().cloned().unwrap();
        let plain = org.insert(
            "Account",
            &obj(json!({"Name": "Pia", "LastName": "Person"})),
            &ctx(),
        );
        assert_eq!(codes(plain), "INVALID_FIELD");
        for q in [
            "SELECT IsPersonAccount FROM Account",
            "SELECT Id FROM Contact WHERE IsPersonAccount = true",
        ] {
            let e = crate::soql::compile(q, org.schemas()).unwrap_err();
            assert_eq!(e.error_code, "INVALID_FIELD", "{q}");
        }
        let search = crate::sosl::parse(
            r"FIND {\+14155550177} IN PHONE FIELDS RETURNING Account(Id, IsPersonAccount)",
        )
        .unwrap();
        let e = crate::sosl::run(&search, &org, Instant::now())
            .err()
            .unwrap();
        assert_eq!(e.error_code, "INVALID_FIELD");

        let business = org
            .insert(
                "Account",
                &obj(json!({"Name": "Globex", "Phone": "+1 415 555 0100"})),
                &ctx(),
            )
            .unwrap();
        org.set_person_accounts(true);
        let a = org.accounts.schema;
        let field =
            |rec: &Record, s: &ObjectSchema, f: &str| rec.get(s.field_index(f).unwrap()).clone();
        let globex = org.accounts.get(&business).unwrap();
        assert_eq!(
            field(globex, a, "Phone"),
            "+1 415 555 0100",
            "records keep their values"
        );
        assert_eq!(field(globex, a, "IsPersonAccount"), false);
        assert!(field(globex, a, "PersonContactId").is_null());

        let pia = org
            .insert(
                "Account",
                &obj(json!({"FirstName": "Pia", "LastName": "Person",
                            "PersonMobilePhone": "+1 (415) 555-0177"})),
                &ctx(),
            )
            .unwrap();
        let rec = org.accounts.get(&pia).unwrap();
        assert_eq!(field(rec, a, "IsPersonAccount"), true);
        assert_eq!(field(rec, a, "Name"), "Pia Person");
        let person_contact = field(rec, a, "PersonContactId")
            .as_str()
            .unwrap()
            .to_string();
        assert!(person_contact.starts_with("003"));
        let c = org.contacts.schema;
        let contact = org.contacts.get(&person_contact).unwrap();
        assert_eq!(field(contact, c, "IsPersonAccount"), true);
        assert_eq!(field(contact, c, "AccountId"), json!(pia));
        assert_eq!(field(contact, c, "Name"), "Pia Person");
        assert_eq!(field(contact, c, "MobilePhone"), "+1 (415) 555-0177");

        // The search finds the account by its person phone (and the person
        // contact by its mobile), and says which is a person.
        let search = crate::sosl::parse(
            r"FIND {\+14155550177} IN PHONE FIELDS RETURNING Contact(Id, IsPersonAccount), Account(Id, IsPersonAccount, PersonContactId)",
        )
        .unwrap();
        let hits = crate::sosl::run(&search, &org, Instant::now()).unwrap();
        let found: Vec<Vec<String>> = hits
            .iter()
            .map(|h| {
                h.rows
                    .iter()
                    .map(|&r| h.table.records[r as usize].id().to_string())
                    .collect()
            })
            .collect();
        assert_eq!(found, vec![vec![person_contact.clone()], vec![pia.clone()]]);

        // A Task names the person contact as its WhoId, the account as its
        // WhatId; the account itself is no WhoId.
        let task = org.insert(
            "Task",
            &obj(json!({"WhoId": person_contact, "WhatId": pia})),
            &ctx(),
        );
        assert!(task.is_ok(), "{task:?}");
        let wrong = org.insert("Task", &obj(json!({"WhoId": pia})), &ctx());
        assert_eq!(codes(wrong), "FIELD_INTEGRITY_EXCEPTION");

        // The person contact follows the account.
        org.update(
            "Account",
            &pia,
            &obj(json!({"PersonHomePhone": "020 7946 0001", "FirstName": "Pina"})),
            &ctx(),
        )
        .unwrap();
        let contact = org.contacts.get(&person_contact).unwrap();
        assert_eq!(field(contact, c, "HomePhone"), "020 7946 0001");
        assert_eq!(field(contact, c, "Name"), "Pina Person");
        assert_eq!(
            field(org.accounts.get(&pia).unwrap(), a, "Name"),
            "Pina Person"
        );
        assert_eq!(
            org.contacts.records.len(),
            1,
            "one person contact, not one per write"
        );
    }

    #[test]
    fn update_sets_fields_and_keeps_create_only() {
        let mut org = org_with_user();
        let id = org
            .insert(
                "Contact",
                json!({"LastName": "Doe", "FirstName": "Jane"})
                    .as_object()
                    .unwrap(),
                &ctx(),
            )
            .unwrap();
        let later = WriteCtx {
            now_ms: 60_000,
            ..ctx()
        };
        org.update(
            "Contact",
            &id,
            json!({"FirstName": "John"}).as_object().unwrap(),
            &later,
        )
        .unwrap();
        let s = org.contacts.schema;
        let c = org.contacts.get(&id).unwrap();
        assert_eq!(c.get(s.field_index("Name").unwrap()), "John Doe");
        assert_eq!(
            c.get(s.field_index("LastModifiedDate").unwrap()),
            "1970-01-01T00:01:00.000+0000"
        );
        assert_eq!(
            c.get(s.field_index("CreatedDate").unwrap()),
            "1970-01-01T00:00:00.000+0000"
        );
        let e = org
            .update(
                "Contact",
                &id,
                json!({"LastName": null}).as_object().unwrap(),
                &later,
            )
            .unwrap_err();
        assert_eq!(e[0].error_code, "REQUIRED_FIELD_MISSING");
        let t = org
            .insert(
                "Task",
                json!({"TaskSubtype": "Call"}).as_object().unwrap(),
                &ctx(),
            )
            .unwrap();
        let e = org
            .update(
                "Task",
                &t,
                json!({"TaskSubtype": "Task"}).as_object().unwrap(),
                &later,
            )
            .unwrap_err();
        assert_eq!(e[0].error_code, "INVALID_FIELD_FOR_INSERT_UPDATE");
    }
}
