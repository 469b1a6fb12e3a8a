//! The org's data: tables of records, with Salesforce's write validation.

use std::collections::HashMap;
use std::time::Instant;

use serde_json::{Map, Value};

use crate::error::ApiError;
use crate::ids;
use crate::schema::{FieldType, ObjectSchema, SCHEMAS};
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
        let s = &*SCHEMAS;
        Org {
            org_id,
            org_name,
            users: Table::new(&s.user),
            contacts: Table::new(&s.contact),
            leads: Table::new(&s.lead),
            accounts: Table::new(&s.account),
            tasks: Table::new(&s.task),
            cases: Table::new(&s.case),
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
        derive_fields(schema, &mut values);
        table.by_id.insert(id.clone(), table.records.len());
        table.records.push(Record {
            values,
            searchable_at: ctx.searchable_at,
        });
        Ok(id)
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

/// Computed fields: `Name` from first and last names, `IsClosed` of Tasks
/// and Cases.
fn derive_fields(schema: &ObjectSchema, values: &mut [Value]) {
    if matches!(schema.name, "User" | "Contact" | "Lead")
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
