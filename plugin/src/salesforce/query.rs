//! The query texts the plugin sends to Salesforce, and the quoting that keeps
//! outside text (phone numbers, call ids) from changing what they ask: SOQL
//! string literals, SOSL `FIND` terms, and the URL paths that carry them.
//!
//! Every SOQL or SOSL text the plugin sends is built here, so one place says
//! how values are quoted.

use crate::settings::UserTypes;
use crate::time;

/// The fields of a User the sync reads; `SystemModstamp` is the high-water
/// mark of the incremental refresh.
const USER_FIELDS: &str = "Id, Name, Username, Email, IsActive, UserType, Title, \
     Department, Phone, MobilePhone, Extension, LastModifiedDate, SystemModstamp";

/// The users query of a full sync, with every user type (`UserTypes::All`).
/// Only active users: a deactivated user cannot own Tasks, so it must
/// leave the list. By name, the order the users page shows.
pub const USERS_SOQL: &str = "SELECT Id, Name, Username, Email, IsActive, UserType, Title, \
     Department, Phone, MobilePhone, Extension, LastModifiedDate, SystemModstamp FROM User \
     WHERE IsActive = true ORDER BY Name";

/// The users query of a full sync of the users `types` lists: only users
/// who can have a phone (`UserType = 'Standard'`) unless every type is
/// asked for.
pub fn users_soql(types: UserTypes) -> String {
    match types {
        UserTypes::All => USERS_SOQL.to_string(),
        UserTypes::Standard => format!(
            "SELECT {USER_FIELDS} FROM User WHERE IsActive = true AND UserType = 'Standard' ORDER BY Name"
        ),
    }
}

/// The users changed after `since_ms` (ms since the Unix epoch), whatever
/// their state or type: a deactivation or a change of `UserType` bumps
/// `SystemModstamp` too, and such a user must leave the list. Oldest
/// change first.
pub fn users_changed_soql(since_ms: u64) -> String {
    format!(
        "SELECT {USER_FIELDS} FROM User WHERE SystemModstamp > {} ORDER BY SystemModstamp",
        time::soql_datetime(since_ms)
    )
}

/// Records per object a phone search returns.
const SEARCH_LIMIT: u32 = 20;

/// `term` escaped for SOSL's `FIND {...}`: every reserved character
/// (`& | ! ( ) { } [ ] ^ " ~ * ? : \ ' + -`) gets a backslash.
pub fn sosl_escape(term: &str) -> String {
    const RESERVED: &str = "&|!(){}[]^\"~*?:\\'+-";
    let mut out = String::with_capacity(term.len() * 2);
    for c in term.chars() {
        if RESERVED.contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The Account fields that exist only in an org with Person Accounts
/// (referring to them elsewhere is `INVALID_FIELD`): whether an Account
/// is a person, its person contact (a Task's `WhoId`), and its person phone
/// fields, which a phone search finds it by.
const PERSON_ACCOUNT_FIELDS: &str =
    "IsPersonAccount, PersonContactId, PersonMobilePhone, PersonHomePhone, PersonOtherPhone";

/// The SOSL search of `term` in phone fields. With `person_accounts` (the
/// org has them) it also asks whether each Account and Contact is a person
/// account: `IsPersonAccount` on both (a person account's hidden Contact
/// may be found too), and an Account's [`PERSON_ACCOUNT_FIELDS`].
pub fn sosl(term: &str, person_accounts: bool) -> String {
    let l = SEARCH_LIMIT;
    let (contact_extra, account_extra) = if person_accounts {
        (
            "IsPersonAccount, ".to_string(),
            format!("{PERSON_ACCOUNT_FIELDS}, "),
        )
    } else {
        (String::new(), String::new())
    };
    format!(
        "FIND {{{}}} IN PHONE FIELDS RETURNING \
         Contact(Id, Name, Phone, MobilePhone, OtherPhone, AccountId, {contact_extra}LastModifiedDate ORDER BY LastModifiedDate DESC LIMIT {l}), \
         Lead(Id, Name, Phone, MobilePhone, LastModifiedDate WHERE IsConverted = false ORDER BY LastModifiedDate DESC LIMIT {l}), \
         Account(Id, Name, Phone, {account_extra}LastModifiedDate ORDER BY LastModifiedDate DESC LIMIT {l})",
        sosl_escape(term)
    )
}

/// `value` as a SOQL string literal's content: `\` and `'` escaped, control
/// characters written as escapes.
pub fn soql_quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// The SOQL query of the Task that logs `call_id` (its `CallObject`).
pub fn task_by_call_object(call_id: &str) -> String {
    format!(
        "SELECT Id FROM Task WHERE CallObject = '{}' LIMIT 1",
        soql_quote(call_id)
    )
}

/// The SOQL query of the most recent open Case whose `field` (ContactId or
/// AccountId) is `id`.
pub fn open_case(field: &str, id: &str) -> String {
    format!(
        "SELECT Id FROM Case WHERE {field} = '{}' AND IsClosed = false ORDER BY CreatedDate DESC LIMIT 1",
        soql_quote(id)
    )
}

/// The SOQL query of an Account's name, for the pop-up of a Contact.
pub fn account_name(account_id: &str) -> String {
    format!(
        "SELECT Name FROM Account WHERE Id = '{}' LIMIT 1",
        soql_quote(account_id)
    )
}

/// `q=<text>` percent-encoded, with `%20` for spaces: a literal `+` is
/// already `%2B`, so every `+` the encoder wrote is a space.
fn q_param(text: &str) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .append_pair("q", text)
        .finish()
        .replace('+', "%20")
}

/// The REST path (relative to the API version) that runs `soql`.
pub fn query_path(soql: &str) -> String {
    format!("query?{}", q_param(soql))
}

/// The REST path (relative to the API version) that runs the SOSL `search`.
pub fn search_path(search: &str) -> String {
    format!("search/?{}", q_param(search))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sosl_escapes_every_reserved_character() {
        assert_eq!(sosl_escape("+1 (415) 555-0100"), r"\+1 \(415\) 555\-0100");
        assert_eq!(
            sosl_escape(r#"&|!(){}[]^"~*?:\'+-"#),
            r#"\&\|\!\(\)\{\}\[\]\^\"\~\*\?\:\\\'\+\-"#
        );
        assert_eq!(soql_quote(r"a'b\c"), r"a\'b\\c");
    }

    #[test]
    fn person_account_fields_are_asked_only_of_orgs_that_have_them() {
        let plain = sosl("+14155550100", false);
        assert!(!plain.contains("Person"), "{plain}");
        assert!(plain.contains("Account(Id, Name, Phone, LastModifiedDate ORDER BY"));
        let person = sosl("+14155550100", true);
        assert!(
            person.contains(
                "Account(Id, Name, Phone, IsPersonAccount, PersonContactId, PersonMobilePhone, \
             PersonHomePhone, PersonOtherPhone, LastModifiedDate ORDER BY"
            ),
            "{person}"
        );
        assert!(
            person.contains("AccountId, IsPersonAccount, LastModifiedDate"),
            "{person}"
        );
        assert!(person.starts_with(r"FIND {\+14155550100} IN PHONE FIELDS"));
    }

    #[test]
    fn user_queries_filter_by_type_and_change() {
        assert!(
            users_soql(UserTypes::Standard)
                .contains("WHERE IsActive = true AND UserType = 'Standard' ORDER BY Name")
        );
        assert_eq!(users_soql(UserTypes::All), USERS_SOQL);
        assert!(users_changed_soql(1_700_000_000_999).ends_with(
            "FROM User WHERE SystemModstamp > 2023-11-14T22:13:20Z ORDER BY SystemModstamp"
        ));
    }
}
