//! Deterministic org data: generated users, accounts, contacts and leads
//! (phones in mixed formats), or a seed.

use std::collections::HashMap;

use serde_json::{Map, Value, json};

use crate::config::{EmulatorConfig, Seed};
use crate::error::EmulatorError;
use crate::ids;
use crate::store::{Org, WriteCtx};

const FIRST: &[&str] = &[
    "James",
    "Mary",
    "Robert",
    "Patricia",
    "John",
    "Jennifer",
    "Michael",
    "Linda",
    "David",
    "Elizabeth",
    "William",
    "Barbara",
    "Richard",
    "Susan",
    "Joseph",
    "Jessica",
    "Thomas",
    "Sarah",
    "Charles",
    "Karen",
    "Amara",
    "Hiroshi",
    "Zoë",
    "Mateo",
    "Priya",
    "Lars",
    "Fatima",
    "Chen",
    "Olga",
    "Kwame",
];
const LAST: &[&str] = &[
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Hernandez",
    "Lopez",
    "Gonzalez",
    "Wilson",
    "Anderson",
    "Thomas",
    "Taylor",
    "Moore",
    "Jackson",
    "Martin",
    "O'Brien",
    "Nakamura",
    "Müller",
    "Okafor",
    "Svensson",
    "Dubois",
    "Kowalski",
    "Rossi",
    "Novak",
    "Haddad",
];
const COMPANIES: &[&str] = &[
    "Acme Corporation",
    "Globex",
    "Initech",
    "Umbrella Health",
    "Stark Industries",
    "Wayne Enterprises",
    "Hooli",
    "Vandelay Industries",
    "Soylent Foods",
    "Tyrell Systems",
];

/// Base time of generated records: 2025-01-01T00:00:00Z.
const BASE_MS: i64 = 1_735_689_600_000;

/// Formats the 10-digit US number `415555NNNN`-style in one of several
/// real-world formats.
pub fn format_phone(area: &str, exchange: &str, line: u32, style: usize) -> String {
    let line = format!("{line:04}");
    match style % 6 {
        0 => format!("({area}) {exchange}-{line}"),
        1 => format!("+1 {area}-{exchange}-{line}"),
        2 => format!("{area}.{exchange}.{line}"),
        3 => format!("{area}{exchange}{line}"),
        4 => format!("+1{area}{exchange}{line}"),
        _ => format!("1 ({area}) {exchange} {line}"),
    }
}

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// Builds the org's data; returns it with the users' passwords.
pub fn build_org(config: &EmulatorConfig) -> Result<(Org, HashMap<String, String>), EmulatorError> {
    let seed = config.seed.clone().unwrap_or_default();
    let name = seed
        .org_name
        .clone()
        .unwrap_or_else(|| config.org_name.clone());
    let mut org = Org::new(ids::make_id(ids::prefix::ORG, 1), name);
    org.set_person_accounts(config.person_accounts || seed.person_accounts);
    let mut passwords = HashMap::new();
    let admin_id = ids::make_id(ids::prefix::USER, 1);
    let ctx = |i: i64| WriteCtx {
        user_id: admin_id.clone(),
        now_ms: BASE_MS + i * 60_000,
        system: true,
        searchable_at: None,
    };
    let insert = |org: &mut Org, object: &str, fields: &Map<String, Value>, i: i64| {
        org.insert(object, fields, &ctx(i))
            .map_err(EmulatorError::Record)
    };
    if seed.users.is_empty() {
        let n = config.users.max(1);
        org.users.records.reserve(n);
        for i in 0..n {
            let fields = if i == 0 {
                json!({"FirstName": "Admin", "LastName": "User", "Username": "admin@example.org",
                       "Email": "admin@example.org", "Title": "System Administrator", "Extension": "100",
                       "Phone": "+1 (415) 555-0000"})
            } else {
                let first = FIRST[i % FIRST.len()];
                let last = LAST[(i / FIRST.len()) % LAST.len()];
                let mail_last: String = last.chars().filter(char::is_ascii_alphabetic).collect();
                let mail_first: String = first.chars().filter(char::is_ascii_alphabetic).collect();
                json!({"FirstName": first, "LastName": last, "Username": format!("user{i}@example.org"),
                       "Email": format!("{}.{}{i}@example.org", mail_first.to_lowercase(), mail_last.to_lowercase()),
                       "IsActive": i % 25 != 24, "Extension": format!("{}", 1000 + i),
                       "Title": if i % 3 == 0 { "Sales Representative" } else { "Support Agent" }})
            };
            let id = insert(&mut org, "User", &obj(fields), i as i64)?;
            passwords.insert(id, config.admin_password.clone());
        }
    } else {
        for (i, u) in seed.users.iter().enumerate() {
            let mut fields = u.clone();
            let pw = fields
                .remove("password")
                .and_then(|v| v.as_str().map(str::to_string));
            let id = insert(&mut org, "User", &fields, i as i64)?;
            passwords.insert(id, pw.unwrap_or_else(|| config.admin_password.clone()));
        }
    }
    let user_ids: Vec<String> = org
        .users
        .records
        .iter()
        .map(|r| r.id().to_string())
        .collect();
    let owner = |i: usize| user_ids[i % user_ids.len().min(5)].clone();
    if config.seed.is_some() {
        load_seed(&mut org, &seed, &ctx)?;
        return Ok((org, passwords));
    }
    let mut account_ids = Vec::new();
    for i in 0..config.accounts {
        let fields = json!({"Name": COMPANIES[i % COMPANIES.len()].to_string() + &if i >= COMPANIES.len() { format!(" {i}") } else { String::new() },
            "Phone": format_phone("415", "555", 300 + i as u32, i + 2), "Type": "Customer - Direct",
            "BillingCity": "San Francisco", "OwnerId": owner(i)});
        account_ids.push(insert(&mut org, "Account", &obj(fields), i as i64)?);
    }
    for i in 0..config.contacts {
        let first = FIRST[(i * 7 + 3) % FIRST.len()];
        let last = LAST[(i * 11 + 5) % LAST.len()];
        let mut f = json!({"FirstName": first, "LastName": last,
            "Email": format!("contact{i}@customer.example.com"),
            "Phone": format_phone("415", "555", 100 + i as u32, i),
            "MobilePhone": format_phone("650", "555", 100 + i as u32, i + 3),
            "OwnerId": owner(i), "Title": "Customer"});
        if i % 4 == 1 {
            f["OtherPhone"] = json!(format!("+44 20 7946 {:04}", 100 + i));
        }
        if !account_ids.is_empty() {
            f["AccountId"] = json!(account_ids[i % account_ids.len()]);
        }
        insert(&mut org, "Contact", &obj(f), i as i64)?;
    }
    for i in 0..config.leads {
        let first = FIRST[(i * 5 + 1) % FIRST.len()];
        let last = LAST[(i * 3 + 7) % LAST.len()];
        let f = json!({"FirstName": first, "LastName": last, "Company": format!("Prospect {i} Ltd"),
            "Email": format!("lead{i}@prospect.example.com"),
            "Phone": format_phone("415", "555", 200 + i as u32, i + 1),
            "MobilePhone": format_phone("408", "555", 200 + i as u32, i + 4),
            "OwnerId": owner(i), "LeadSource": "Phone Inquiry"});
        insert(&mut org, "Lead", &obj(f), i as i64)?;
    }
    Ok((org, passwords))
}

fn load_seed(
    org: &mut Org,
    seed: &Seed,
    ctx: &dyn Fn(i64) -> WriteCtx,
) -> Result<(), EmulatorError> {
    for (object, list) in [
        ("Account", &seed.accounts),
        ("Contact", &seed.contacts),
        ("Lead", &seed.leads),
        ("Task", &seed.tasks),
        ("Case", &seed.cases),
    ] {
        for (i, fields) in list.iter().enumerate() {
            org.insert(object, fields, &ctx(i as i64))
                .map_err(EmulatorError::Record)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_org_is_deterministic_and_mixed() {
        let cfg = EmulatorConfig {
            users: 30,
            ..EmulatorConfig::default()
        };
        let (a, pw) = build_org(&cfg).unwrap();
        let (b, _) = build_org(&cfg).unwrap();
        assert_eq!(a.users.records.len(), 30);
        assert_eq!(a.contacts.records.len(), 20);
        assert_eq!(a.users.records[5].id(), b.users.records[5].id());
        assert_eq!(a.org_id.len(), 18);
        assert!(a.org_id.starts_with("00D"));
        assert_eq!(pw.len(), 30);
        let admin = a.user_by_username("ADMIN@example.org").unwrap();
        assert_eq!(admin.id(), ids::make_id("005", 1));
        let phone = a.contacts.schema.field_index("Phone").unwrap();
        assert_eq!(a.contacts.records[0].get(phone), "(415) 555-0100");
        assert_eq!(a.contacts.records[1].get(phone), "+1 415-555-0101");
        assert_eq!(a.user_active(&ids::make_id("005", 25)), Some(false));
    }

    #[test]
    fn seeded_org_uses_seed_records() {
        let seed = Seed::from_json(
            r#"{"users":[{"Username":"boss@acme.test","LastName":"Boss","Email":"boss@acme.test","password":"pw"}],
                "contacts":[{"LastName":"Doe","Phone":"+1 (212) 555-0199"}]}"#,
        )
        .unwrap();
        let cfg = EmulatorConfig {
            seed: Some(seed),
            ..EmulatorConfig::default()
        };
        let (org, pw) = build_org(&cfg).unwrap();
        assert_eq!(org.users.records.len(), 1);
        assert_eq!(org.contacts.records.len(), 1);
        assert_eq!(org.leads.records.len(), 0);
        assert_eq!(pw.values().next().map(String::as_str), Some("pw"));
        let bad = Seed::from_json(r#"{"leads":[{"LastName":"NoCompany"}]}"#).unwrap();
        assert!(
            build_org(&EmulatorConfig {
                seed: Some(bad),
                ..EmulatorConfig::default()
            })
            .is_err()
        );
    }
}
