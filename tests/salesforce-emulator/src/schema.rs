//! The sObjects the emulator knows, with the field metadata that drives
//! SOQL binding, validation and `describe`. An org with Person Accounts has
//! schemas of its own ([`PERSON_SCHEMAS`]): Account gains the person fields
//! (`IsPersonAccount`, `PersonContactId`, `FirstName`, `LastName`,
//! `PersonEmail`, the `Person…Phone` fields) and Contact `IsPersonAccount`;
//! in an org without them those names are no fields at all, so naming them
//! is `INVALID_FIELD`, as in Salesforce.

use std::collections::HashMap;
use std::sync::LazyLock;

use serde_json::{Value, json};

use crate::ids::prefix;

/// A field's data type (a subset of Salesforce's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    Id,
    String,
    TextArea,
    Phone,
    Email,
    Url,
    Boolean,
    Int,
    Double,
    Date,
    DateTime,
    Picklist,
    Reference,
}

impl FieldType {
    fn soap_type(self) -> &'static str {
        match self {
            FieldType::Id | FieldType::Reference => "tns:ID",
            FieldType::Boolean => "xsd:boolean",
            FieldType::Int => "xsd:int",
            FieldType::Double => "xsd:double",
            FieldType::Date => "xsd:date",
            FieldType::DateTime => "xsd:dateTime",
            _ => "xsd:string",
        }
    }

    fn describe_name(self) -> &'static str {
        match self {
            FieldType::Id => "id",
            FieldType::String => "string",
            FieldType::TextArea => "textarea",
            FieldType::Phone => "phone",
            FieldType::Email => "email",
            FieldType::Url => "url",
            FieldType::Boolean => "boolean",
            FieldType::Int => "int",
            FieldType::Double => "double",
            FieldType::Date => "date",
            FieldType::DateTime => "datetime",
            FieldType::Picklist => "picklist",
            FieldType::Reference => "reference",
        }
    }

    /// Text-like fields compared case-insensitively as strings.
    pub fn is_text(self) -> bool {
        !matches!(
            self,
            FieldType::Boolean
                | FieldType::Int
                | FieldType::Double
                | FieldType::Date
                | FieldType::DateTime
        )
    }
}

/// One field of an sObject.
#[derive(Debug, Clone)]
pub struct FieldDef {
    pub name: &'static str,
    pub label: &'static str,
    pub ftype: FieldType,
    pub length: usize,
    /// Required on create (not nillable, no default).
    pub required: bool,
    pub createable: bool,
    pub updateable: bool,
    pub picklist: &'static [&'static str],
    pub restricted: bool,
    pub default: Option<&'static str>,
    pub reference_to: &'static [&'static str],
}

/// One sObject type.
#[derive(Debug)]
pub struct ObjectSchema {
    pub name: &'static str,
    pub label: &'static str,
    pub label_plural: &'static str,
    pub key_prefix: &'static str,
    pub fields: Vec<FieldDef>,
    by_lower: HashMap<String, usize>,
    /// Whether REST create/update is allowed.
    pub writable: bool,
    /// Whether SOSL searches it.
    pub searchable: bool,
}

impl ObjectSchema {
    /// Field index by case-insensitive name.
    pub fn field_index(&self, name: &str) -> Option<usize> {
        self.by_lower.get(&name.to_ascii_lowercase()).copied()
    }

    pub fn field(&self, name: &str) -> Option<&FieldDef> {
        self.field_index(name).map(|i| &self.fields[i])
    }

    /// Indexes of fields of a type.
    pub fn fields_of_type(&self, t: FieldType) -> impl Iterator<Item = usize> + '_ {
        self.fields
            .iter()
            .enumerate()
            .filter(move |(_, f)| f.ftype == t)
            .map(|(i, _)| i)
    }

    /// The `describe` answer (a useful subset of Salesforce's).
    pub fn describe(&self, version: &str) -> Value {
        let fields: Vec<Value> = self
            .fields
            .iter()
            .map(|f| {
                json!({
                    "name": f.name,
                    "label": f.label,
                    "type": f.ftype.describe_name(),
                    "soapType": f.ftype.soap_type(),
                    "length": if f.ftype.is_text() { f.length } else { 0 },
                    "nillable": !f.required && f.ftype != FieldType::Boolean && f.name != "Id",
                    "createable": f.createable,
                    "updateable": f.updateable,
                    "defaultedOnCreate": f.default.is_some() || !f.createable,
                    "restrictedPicklist": f.restricted,
                    "picklistValues": f.picklist.iter().map(|v| json!({
                        "active": true, "defaultValue": f.default == Some(*v), "label": v, "validFor": null, "value": v
                    })).collect::<Vec<_>>(),
                    "referenceTo": f.reference_to,
                    "custom": false,
                    "filterable": true,
                    "sortable": f.ftype != FieldType::TextArea,
                })
            })
            .collect();
        let mut d = self.summary(version);
        if let Some(obj) = d.as_object_mut() {
            obj.insert("fields".into(), Value::Array(fields));
            obj.insert("childRelationships".into(), json!([]));
            obj.insert("recordTypeInfos".into(), json!([]));
        }
        d
    }

    /// The entry of `GET /sobjects/`.
    pub fn summary(&self, version: &str) -> Value {
        let base = format!("/services/data/v{version}/sobjects/{}", self.name);
        json!({
            "name": self.name,
            "label": self.label,
            "labelPlural": self.label_plural,
            "keyPrefix": self.key_prefix,
            "custom": false,
            "createable": self.writable,
            "updateable": self.writable,
            "deletable": false,
            "queryable": true,
            "searchable": self.searchable,
            "retrieveable": true,
            "urls": {
                "sobject": base,
                "describe": format!("{base}/describe"),
                "rowTemplate": format!("{base}/{{ID}}"),
            }
        })
    }
}

struct F(FieldDef);

impl F {
    fn new(name: &'static str, label: &'static str, ftype: FieldType) -> F {
        let length = match ftype {
            FieldType::Id | FieldType::Reference => 18,
            FieldType::TextArea => 32_000,
            FieldType::Phone => 40,
            FieldType::Email => 80,
            _ => 255,
        };
        F(FieldDef {
            name,
            label,
            ftype,
            length,
            required: false,
            createable: true,
            updateable: true,
            picklist: &[],
            restricted: false,
            default: None,
            reference_to: &[],
        })
    }
    fn len(mut self, n: usize) -> F {
        self.0.length = n;
        self
    }
    fn required(mut self) -> F {
        self.0.required = true;
        self
    }
    fn system(mut self) -> F {
        self.0.createable = false;
        self.0.updateable = false;
        self
    }
    fn create_only(mut self) -> F {
        self.0.updateable = false;
        self
    }
    fn picklist(mut self, values: &'static [&'static str], restricted: bool) -> F {
        self.0.picklist = values;
        self.0.restricted = restricted;
        self
    }
    fn default(mut self, v: &'static str) -> F {
        self.0.default = Some(v);
        self
    }
    fn refs(mut self, to: &'static [&'static str]) -> F {
        self.0.reference_to = to;
        self
    }
}

fn object(
    name: &'static str,
    label: &'static str,
    label_plural: &'static str,
    key_prefix: &'static str,
    writable: bool,
    searchable: bool,
    specific: Vec<F>,
) -> ObjectSchema {
    use FieldType::*;
    let mut fields = vec![F::new("Id", format_label(name), Id).system().0];
    fields.extend(specific.into_iter().map(|f| f.0));
    for f in [
        F::new("CreatedDate", "Created Date", DateTime).system(),
        F::new("CreatedById", "Created By ID", Reference)
            .system()
            .refs(&["User"]),
        F::new("LastModifiedDate", "Last Modified Date", DateTime).system(),
        F::new("LastModifiedById", "Last Modified By ID", Reference)
            .system()
            .refs(&["User"]),
        F::new("SystemModstamp", "System Modstamp", DateTime).system(),
        F::new("IsDeleted", "Deleted", Boolean).system(),
    ] {
        fields.push(f.0);
    }
    let by_lower = fields
        .iter()
        .enumerate()
        .map(|(i, f)| (f.name.to_ascii_lowercase(), i))
        .collect();
    ObjectSchema {
        name,
        label,
        label_plural,
        key_prefix,
        fields,
        by_lower,
        writable,
        searchable,
    }
}

fn format_label(name: &'static str) -> &'static str {
    match name {
        "User" => "User ID",
        "Contact" => "Contact ID",
        "Lead" => "Lead ID",
        "Account" => "Account ID",
        "Case" => "Case ID",
        _ => "Activity ID",
    }
}

const SALUTATIONS: &[&str] = &["Mr.", "Ms.", "Mrs.", "Dr.", "Prof.", "Mx."];

/// Every schema, by object name.
pub struct Schemas {
    pub user: ObjectSchema,
    pub contact: ObjectSchema,
    pub lead: ObjectSchema,
    pub account: ObjectSchema,
    pub task: ObjectSchema,
    pub case: ObjectSchema,
}

impl Schemas {
    /// All schemas in a stable order.
    pub fn all(&self) -> [&ObjectSchema; 6] {
        [
            &self.account,
            &self.case,
            &self.contact,
            &self.lead,
            &self.task,
            &self.user,
        ]
    }

    /// Schema by case-insensitive object name.
    pub fn by_name(&self, name: &str) -> Option<&ObjectSchema> {
        self.all()
            .into_iter()
            .find(|s| s.name.eq_ignore_ascii_case(name))
    }

    /// Schema by id key prefix.
    pub fn by_prefix(&self, p: &str) -> Option<&ObjectSchema> {
        self.all().into_iter().find(|s| s.key_prefix == p)
    }
}

/// The schemas of an org without Person Accounts, built once.
pub static SCHEMAS: LazyLock<Schemas> = LazyLock::new(|| build(false));

/// The schemas of an org with Person Accounts, built once.
pub static PERSON_SCHEMAS: LazyLock<Schemas> = LazyLock::new(|| build(true));

/// The schemas of an org with or without Person Accounts.
pub fn schemas(person_accounts: bool) -> &'static Schemas {
    if person_accounts {
        &PERSON_SCHEMAS
    } else {
        &SCHEMAS
    }
}

/// The fields an org with Person Accounts adds to Account. In Salesforce a
/// record type makes an Account a person; the emulator has no record types,
/// so an Account written with a `LastName` is one (`store`).
fn person_account_fields() -> Vec<F> {
    use FieldType::*;
    vec![
        F::new("IsPersonAccount", "Is Person Account", Boolean).system(),
        F::new("PersonContactId", "Person Contact ID", Reference)
            .system()
            .refs(&["Contact"]),
        F::new("Salutation", "Salutation", Picklist).picklist(SALUTATIONS, false),
        F::new("FirstName", "First Name", String).len(40),
        F::new("LastName", "Last Name", String).len(80),
        F::new("PersonEmail", "Email", Email),
        F::new("PersonMobilePhone", "Mobile", Phone),
        F::new("PersonHomePhone", "Home Phone", Phone),
        F::new("PersonOtherPhone", "Other Phone", Phone),
    ]
}

fn build(person_accounts: bool) -> Schemas {
    use FieldType::*;
    let user = object(
        "User",
        "User",
        "Users",
        prefix::USER,
        false,
        true,
        vec![
            F::new("Username", "Username", String).len(80).required(),
            F::new("LastName", "Last Name", String).len(80).required(),
            F::new("FirstName", "First Name", String).len(40),
            F::new("Name", "Full Name", String).len(121).system(),
            F::new("Alias", "Alias", String).len(8),
            F::new("Email", "Email", Email).required(),
            F::new("IsActive", "Active", Boolean).default("true"),
            F::new("UserType", "User Type", Picklist)
                .picklist(
                    &[
                        "Standard",
                        "PowerPartner",
                        "PowerCustomerSuccess",
                        "CustomerSuccess",
                        "CspLitePortal",
                        "CsnOnly",
                        "Guest",
                        "AutomatedProcess",
                    ],
                    true,
                )
                .default("Standard")
                .system(),
            F::new("Title", "Title", String).len(80),
            F::new("Department", "Department", String).len(80),
            F::new("Phone", "Phone", Phone),
            F::new("MobilePhone", "Mobile", Phone),
            F::new("Extension", "Extension", String).len(40),
            F::new("TimeZoneSidKey", "Time Zone", Picklist).default("America/Los_Angeles"),
            F::new("LanguageLocaleKey", "Language", Picklist).default("en_US"),
        ],
    );
    let contact = object(
        "Contact",
        "Contact",
        "Contacts",
        prefix::CONTACT,
        true,
        true,
        vec![
            F::new("Salutation", "Salutation", Picklist).picklist(SALUTATIONS, false),
            F::new("FirstName", "First Name", String).len(40),
            F::new("LastName", "Last Name", String).len(80).required(),
            F::new("Name", "Full Name", String).len(121).system(),
            F::new("AccountId", "Account ID", Reference).refs(&["Account"]),
            F::new("Title", "Title", String).len(128),
            F::new("Department", "Department", String).len(80),
            F::new("Email", "Email", Email),
            F::new("Phone", "Business Phone", Phone),
            F::new("MobilePhone", "Mobile Phone", Phone),
            F::new("HomePhone", "Home Phone", Phone),
            F::new("OtherPhone", "Other Phone", Phone),
            F::new("AssistantPhone", "Asst. Phone", Phone),
            F::new("Fax", "Business Fax", Phone),
            F::new("MailingCity", "Mailing City", String).len(40),
            F::new("MailingCountry", "Mailing Country", String).len(80),
            F::new("LeadSource", "Lead Source", Picklist).picklist(
                &[
                    "Web",
                    "Phone Inquiry",
                    "Partner Referral",
                    "Purchased List",
                    "Other",
                ],
                false,
            ),
            F::new("Description", "Contact Description", TextArea),
            F::new("OwnerId", "Owner ID", Reference).refs(&["User"]),
        ]
        .into_iter()
        .chain(
            person_accounts
                .then(|| F::new("IsPersonAccount", "Is Person Account", Boolean).system()),
        )
        .collect(),
    );
    let lead = object(
        "Lead",
        "Lead",
        "Leads",
        prefix::LEAD,
        true,
        true,
        vec![
            F::new("Salutation", "Salutation", Picklist).picklist(SALUTATIONS, false),
            F::new("FirstName", "First Name", String).len(40),
            F::new("LastName", "Last Name", String).len(80).required(),
            F::new("Name", "Full Name", String).len(121).system(),
            F::new("Company", "Company", String).required(),
            F::new("Title", "Title", String).len(128),
            F::new("Email", "Email", Email),
            F::new("Phone", "Phone", Phone),
            F::new("MobilePhone", "Mobile Phone", Phone),
            F::new("Fax", "Fax", Phone),
            F::new("Status", "Status", Picklist)
                .picklist(
                    &[
                        "Open - Not Contacted",
                        "Working - Contacted",
                        "Closed - Converted",
                        "Closed - Not Converted",
                    ],
                    false,
                )
                .default("Open - Not Contacted"),
            F::new("LeadSource", "Lead Source", Picklist).picklist(
                &[
                    "Web",
                    "Phone Inquiry",
                    "Partner Referral",
                    "Purchased List",
                    "Other",
                ],
                false,
            ),
            F::new("City", "City", String).len(40),
            F::new("Country", "Country", String).len(80),
            F::new("IsConverted", "Converted", Boolean).system(),
            F::new("Description", "Description", TextArea),
            F::new("OwnerId", "Owner ID", Reference).refs(&["User"]),
        ],
    );
    let account = object(
        "Account",
        "Account",
        "Accounts",
        prefix::ACCOUNT,
        true,
        true,
        vec![
            F::new("Name", "Account Name", String).required(),
            F::new("Phone", "Account Phone", Phone),
            F::new("Fax", "Account Fax", Phone),
            F::new("Website", "Website", Url),
            F::new("Type", "Account Type", Picklist).picklist(
                &[
                    "Prospect",
                    "Customer - Direct",
                    "Customer - Channel",
                    "Partner",
                    "Other",
                ],
                false,
            ),
            F::new("Industry", "Industry", Picklist),
            F::new("BillingCity", "Billing City", String).len(40),
            F::new("BillingCountry", "Billing Country", String).len(80),
            F::new("Description", "Account Description", TextArea),
            F::new("OwnerId", "Owner ID", Reference).refs(&["User"]),
        ]
        .into_iter()
        .chain(
            person_accounts
                .then(person_account_fields)
                .into_iter()
                .flatten(),
        )
        .collect(),
    );
    let task = object(
        "Task",
        "Task",
        "Tasks",
        prefix::TASK,
        true,
        false,
        vec![
            F::new("Subject", "Subject", Picklist),
            F::new("Status", "Status", Picklist)
                .picklist(
                    &[
                        "Not Started",
                        "In Progress",
                        "Completed",
                        "Waiting on someone else",
                        "Deferred",
                    ],
                    false,
                )
                .default("Not Started"),
            F::new("Priority", "Priority", Picklist)
                .picklist(&["High", "Normal", "Low"], false)
                .default("Normal"),
            // The activity type standard reports filter on.
            F::new("Type", "Type", Picklist)
                .picklist(&["Call", "Email", "Meeting", "Other"], false),
            F::new("TaskSubtype", "Task Subtype", Picklist)
                .picklist(
                    &["Task", "Email", "ListEmail", "Cadence", "Call", "LinkedIn"],
                    true,
                )
                .default("Task")
                .create_only(),
            F::new("CallType", "Call Type", Picklist)
                .picklist(&["Inbound", "Outbound", "Internal"], true),
            F::new("CallDurationInSeconds", "Call Duration", Int),
            F::new("CallDisposition", "Call Result", String),
            F::new("CallObject", "Call Object Identifier", String),
            F::new("WhoId", "Name ID", Reference).refs(&["Contact", "Lead"]),
            F::new("WhatId", "Related To ID", Reference).refs(&["Account", "Case"]),
            F::new("OwnerId", "Assigned To ID", Reference).refs(&["User"]),
            F::new("ActivityDate", "Due Date Only", Date),
            F::new("Description", "Comments", TextArea),
            F::new("IsClosed", "Closed", Boolean).system(),
        ],
    );
    // A support case: a call's Task may be related to the caller's open one.
    let case = object(
        "Case",
        "Case",
        "Cases",
        prefix::CASE,
        true,
        false,
        vec![
            F::new("Subject", "Subject", String).len(255),
            F::new("Status", "Status", Picklist)
                .picklist(&["New", "Working", "Escalated", "Closed"], false)
                .default("New"),
            F::new("ContactId", "Contact ID", Reference).refs(&["Contact"]),
            F::new("AccountId", "Account ID", Reference).refs(&["Account"]),
            F::new("Description", "Description", TextArea),
            F::new("OwnerId", "Owner ID", Reference).refs(&["User"]),
            F::new("IsClosed", "Closed", Boolean).system(),
        ],
    );
    Schemas {
        user,
        contact,
        lead,
        account,
        task,
        case,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_are_case_insensitive() {
        let s = &*SCHEMAS;
        assert_eq!(s.by_name("contact").map(|o| o.name), Some("Contact"));
        assert_eq!(s.by_prefix("00T").map(|o| o.name), Some("Task"));
        assert!(s.contact.field("lastname").is_some_and(|f| f.required));
        assert!(s.task.field("CALLTYPE").is_some_and(|f| f.restricted));
        assert_eq!(s.contact.fields_of_type(FieldType::Phone).count(), 6);
    }

    #[test]
    fn person_account_fields_exist_only_in_an_org_with_them() {
        for name in [
            "IsPersonAccount",
            "PersonContactId",
            "PersonMobilePhone",
            "LastName",
        ] {
            assert!(SCHEMAS.account.field(name).is_none(), "{name}");
            assert!(PERSON_SCHEMAS.account.field(name).is_some(), "{name}");
        }
        assert!(SCHEMAS.contact.field("IsPersonAccount").is_none());
        assert!(PERSON_SCHEMAS.contact.field("IsPersonAccount").is_some());
        assert_eq!(
            PERSON_SCHEMAS
                .account
                .fields_of_type(FieldType::Phone)
                .count(),
            5,
            "Phone, Fax and the three person phones"
        );
        assert!(std::ptr::eq(schemas(true), &*PERSON_SCHEMAS));
    }
}
