//! How a page of Salesforce's users becomes a stored chunk: the page's text
//! is borrowed from the answer where it can be, and each user is written
//! straight into the chunk's JSON (exactly [`UserRecord`](super::UserRecord)'s form) with its
//! entry for the id map. Reading and writing this way was most of a sync
//! step's own time before.

use std::borrow::Cow;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

#[cfg(test)]
use super::UserRecord;
use super::{CHUNK_TARGET, ids_part_key, page_key};
use crate::error::PluginError;
use crate::http;
use crate::salesforce::{ApiResponse, QueryPage};
use crate::store::Batch;

/// Text of a page: borrowed from the body unless JSON escapes made serde
/// build it. A page is 2,000 users of a dozen fields; allocating each field
/// was the largest share of a step's own time.
struct Text<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Cow<'de, str>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: serde::de::Error>(
                self,
                v: &'de str,
            ) -> Result<Self::Value, E> {
                Ok(Cow::Borrowed(v))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Cow::Owned(v.to_owned()))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Cow::Owned(v))
            }
        }
        d.deserialize_str(Visitor).map(Text)
    }
}

/// A User record as the REST API sends it.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct SfUser<'a> {
    #[serde(borrow)]
    id: Text<'a>,
    #[serde(default, borrow)]
    name: Option<Text<'a>>,
    #[serde(default, borrow)]
    username: Option<Text<'a>>,
    #[serde(default, borrow)]
    email: Option<Text<'a>>,
    #[serde(default)]
    is_active: Option<bool>,
    #[serde(default, borrow)]
    user_type: Option<Text<'a>>,
    #[serde(default, borrow)]
    title: Option<Text<'a>>,
    #[serde(default, borrow)]
    department: Option<Text<'a>>,
    #[serde(default, borrow)]
    phone: Option<Text<'a>>,
    #[serde(default, borrow)]
    mobile_phone: Option<Text<'a>>,
    #[serde(default, borrow)]
    extension: Option<Text<'a>>,
    #[serde(default, borrow)]
    last_modified_date: Option<Text<'a>>,
    /// Not stored: the sync's high-water mark is made of it.
    #[serde(default, borrow)]
    system_modstamp: Option<Text<'a>>,
}

/// Text for a chunk. `plain` text was borrowed from the page: serde_json
/// borrows only strings without escapes and refuses raw control
/// characters, so it needs no escaping and is copied as is (serde_json's
/// escaping scan was a fifth of a step's own time).
#[derive(Clone, Copy)]
struct Out<'a> {
    text: &'a str,
    plain: bool,
}

impl<'a> Out<'a> {
    fn of(text: &'a Text<'a>) -> Self {
        Self {
            text: &text.0,
            plain: matches!(text.0, Cow::Borrowed(_)),
        }
    }

    fn write(self, out: &mut Vec<u8>) -> Result<(), PluginError> {
        if self.plain {
            out.push(b'"');
            out.extend_from_slice(self.text.as_bytes());
            out.push(b'"');
            Ok(())
        } else {
            serde_json::to_writer(&mut *out, self.text)
                .map_err(|e| PluginError::Store(format!("cannot encode a user: {e}")))
        }
    }
}

/// A user as a chunk stores it: exactly [`UserRecord`](super::UserRecord)'s JSON (the tests
/// compare them), written straight from the page's text.
pub(super) struct StoredUser<'a> {
    id: Out<'a>,
    name: Out<'a>,
    username: Out<'a>,
    email: Option<Out<'a>>,
    active: bool,
    kind: Option<Out<'a>>,
    title: Option<Out<'a>>,
    department: Option<Out<'a>>,
    phone: Option<Out<'a>>,
    mobile: Option<Out<'a>>,
    extension: Option<Out<'a>>,
    modified: Option<Out<'a>>,
}

impl StoredUser<'_> {
    /// Append the user's JSON object, fields in [`UserRecord`](super::UserRecord)'s order,
    /// absent ones left out as its `skip_serializing_if`s do.
    fn write_json(&self, out: &mut Vec<u8>) -> Result<(), PluginError> {
        out.extend_from_slice(b"{\"id\":");
        self.id.write(out)?;
        out.extend_from_slice(b",\"name\":");
        self.name.write(out)?;
        out.extend_from_slice(b",\"username\":");
        self.username.write(out)?;
        let optional = |out: &mut Vec<u8>, name: &str, value: Option<Out<'_>>| {
            let Some(value) = value else {
                return Ok(());
            };
            out.extend_from_slice(b",\"");
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b"\":");
            value.write(out)
        };
        optional(out, "email", self.email)?;
        if !self.active {
            out.extend_from_slice(b",\"active\":false");
        }
        optional(out, "type", self.kind)?;
        optional(out, "title", self.title)?;
        optional(out, "department", self.department)?;
        optional(out, "phone", self.phone)?;
        optional(out, "mobile", self.mobile)?;
        optional(out, "extension", self.extension)?;
        optional(out, "modified", self.modified)?;
        out.push(b'}');
        Ok(())
    }
}

impl<'a> SfUser<'a> {
    /// The user's id as Salesforce sent it.
    pub(super) fn id(&self) -> &str {
        &self.id.0
    }

    /// Whether the user is active (absent: yes, as the stored form says).
    pub(super) fn is_active(&self) -> bool {
        self.is_active.unwrap_or(true)
    }

    /// Salesforce's `UserType`.
    pub(super) fn user_type(&self) -> Option<&str> {
        self.user_type.as_ref().map(|t| &*t.0)
    }

    /// When Salesforce last changed the user (its `SystemModstamp`), in ms
    /// since the Unix epoch.
    pub(super) fn modstamp_ms(&self) -> Option<u64> {
        self.system_modstamp
            .as_ref()
            .and_then(|t| crate::time::parse_datetime(&t.0))
    }

    /// The user as a chunk stores it, as a [`UserRecord`](super::UserRecord)
    /// (the refresh edits chunks as records).
    pub(super) fn record(&'a self) -> Result<super::UserRecord, PluginError> {
        let mut json = Vec::with_capacity(256);
        self.stored().write_json(&mut json)?;
        serde_json::from_slice(&json)
            .map_err(|e| PluginError::Store(format!("cannot encode a user: {e}")))
    }

    pub(super) fn stored(&'a self) -> StoredUser<'a> {
        const EMPTY: Out<'static> = Out {
            text: "",
            plain: true,
        };
        let text = |t: &'a Option<Text<'a>>| t.as_ref().map_or(EMPTY, Out::of);
        // Blank optional fields are stored as absent: smaller chunks, and
        // an empty e-mail is no e-mail.
        let some = |t: &'a Option<Text<'a>>| {
            t.as_ref()
                .map(Out::of)
                .filter(|o| !o.text.trim().is_empty())
        };
        StoredUser {
            id: Out::of(&self.id),
            name: text(&self.name),
            username: text(&self.username),
            email: some(&self.email),
            active: self.is_active.unwrap_or(true),
            kind: some(&self.user_type),
            title: some(&self.title),
            department: some(&self.department),
            phone: some(&self.phone),
            mobile: some(&self.mobile_phone),
            extension: some(&self.extension),
            modified: some(&self.last_modified_date),
        }
    }
}

/// A chunk being filled in this step: the JSON array written as users
/// arrive, and their entries for the id map.
pub(super) struct PartWriter {
    pub(super) page: u32,
    pub(super) json: Vec<u8>,
    pub(super) ids: String,
    pub(super) count: u32,
}

impl PartWriter {
    pub(super) fn new(page: u32) -> Self {
        let mut json = Vec::with_capacity(CHUNK_TARGET * 256);
        json.push(b'[');
        Self {
            page,
            json,
            ids: String::with_capacity(CHUNK_TARGET * 24),
            count: 0,
        }
    }

    pub(super) fn push(&mut self, user: &StoredUser<'_>) -> Result<(), PluginError> {
        if self.count > 0 {
            self.json.push(b',');
        }
        user.write_json(&mut self.json)?;
        // Only ids `find` can ask for go into the map: a comma or colon in
        // one would garble the entries around it.
        let id = user.id.text;
        if !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            let _ = write!(self.ids, "{id}:{},", self.page);
        }
        self.count += 1;
        Ok(())
    }

    pub(super) fn finish(mut self) -> Part {
        self.json.push(b']');
        Part {
            page: self.page,
            json: self.json,
            ids: ChunkIds {
                count: self.count,
                ids: self.ids,
            },
        }
    }
}

/// A chunk read in this step, encoded, not yet written.
pub(super) struct Part {
    pub(super) page: u32,
    /// The chunk: a JSON array of [`UserRecord`](super::UserRecord).
    pub(super) json: Vec<u8>,
    pub(super) ids: ChunkIds,
}

impl Part {
    /// `batch` with the chunk and its id list added.
    pub(super) fn stage(self, sync: &str, batch: Batch) -> Result<Batch, PluginError> {
        Ok(batch
            .set(&ids_part_key(sync, self.page), &self.ids)?
            .set_raw(&page_key(sync, self.page), self.json))
    }
}

/// The id list of one staged chunk (`users/sync/<sync>/ids-<page>`).
#[derive(Serialize, Deserialize)]
pub(super) struct ChunkIds {
    /// Users in the chunk.
    pub(super) count: u32,
    /// `<id>:<page>,` per user: the chunk's share of the id map.
    pub(super) ids: String,
}

/// A page of the users query, its text borrowed from the answer.
pub(super) fn parse_page(response: &ApiResponse) -> Result<QueryPage<SfUser<'_>>, PluginError> {
    serde_json::from_slice(&response.body).map_err(|e| {
        PluginError::CrmUnavailable(format!(
            "Salesforce's answer to the users query could not be read ({}); try again later",
            http::sanitize(&e.to_string())
        ))
    })
}

/// A whole page of the users query as the chunk a sync step would store for
/// it (a JSON array of [`UserRecord`](super::UserRecord)): the path a page
/// takes through [`parse_page`] and [`PartWriter`], in one call, so the
/// fuzzer (`plugin/fuzz`) can check that every page Salesforce may send
/// stores as user records that read back the same.
pub fn page_chunk(body: &[u8]) -> Result<Vec<u8>, PluginError> {
    let response = ApiResponse {
        status: 200,
        headers: Vec::new(),
        body: body.to_vec(),
    };
    let page = parse_page(&response)?;
    let mut part = PartWriter::new(0);
    for user in &page.records {
        part.push(&user.stored())?;
    }
    Ok(part.finish().json)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A page's users as a chunk stores them.
    fn stored_json(page: &str) -> String {
        let page: QueryPage<SfUser<'_>> = match serde_json::from_str(page) {
            Ok(p) => p,
            Err(e) => panic!("{e}"),
        };
        let mut part = PartWriter::new(0);
        for user in &page.records {
            assert!(part.push(&user.stored()).is_ok());
        }
        String::from_utf8(part.finish().json).unwrap_or_default()
    }

    #[test]
    fn salesforce_records_become_compact_user_records() {
        let json = stored_json(
            r#"{"totalSize":1,"done":true,"records":[{"attributes":{"type":"User","url":"/x"},
            "Id":"005A","Name":"Ann","Username":"ann@acme","Email":"","IsActive":true,
            "UserType":"Standard","Title":null,"Phone":" ","Extension":"12"}]}"#,
        );
        assert_eq!(
            json,
            r#"[{"id":"005A","name":"Ann","username":"ann@acme","type":"Standard","extension":"12"}]"#
        );
        let users: Result<Vec<UserRecord>, _> = serde_json::from_str(&json);
        assert_eq!(users.ok().map(|u| u[0].email.is_none()), Some(true));
    }

    #[test]
    fn the_stored_form_is_user_records_json_escapes_included() {
        // Escaped text cannot be borrowed from the body: it is unescaped
        // into its own string, and written escaped again.
        let json = stored_json(
            r#"{"totalSize":1,"done":true,"records":[{"Id":"005B","Name":"Zo\u00eb \"Z\" O'Neil",
            "Username":"z@acme","Email":"z@acme.org","IsActive":false,"UserType":"Standard",
            "Title":"Head\\of","Department":"Vertrieb Süd","Phone":"+1 555","MobilePhone":"+1 556",
            "Extension":"12","LastModifiedDate":"2024-01-02T03:04:05.000+0000"}]}"#,
        );
        let record = UserRecord {
            id: "005B".into(),
            name: "Zoë \"Z\" O'Neil".into(),
            username: "z@acme".into(),
            email: Some("z@acme.org".into()),
            active: false,
            kind: Some("Standard".into()),
            title: Some("Head\\of".into()),
            department: Some("Vertrieb Süd".into()),
            phone: Some("+1 555".into()),
            mobile: Some("+1 556".into()),
            extension: Some("12".into()),
            modified: Some("2024-01-02T03:04:05.000+0000".into()),
        };
        assert_eq!(
            Ok(json),
            serde_json::to_string(&[record]).map_err(|e| e.to_string())
        );
    }

    #[test]
    fn odd_ids_stay_out_of_the_id_map() {
        let mut part = PartWriter::new(7);
        for id in ["005A", "x,005B:1", "", "005C"] {
            // A user with only an id, read as a page would give it.
            let page = serde_json::json!({ "Id": id }).to_string();
            let pushed = serde_json::from_str::<SfUser<'_>>(&page)
                .map(|user| part.push(&user.stored()).is_ok());
            assert_eq!(pushed.ok(), Some(true));
        }
        let part = part.finish();
        assert_eq!(part.ids.ids, "005A:7,005C:7,");
        assert_eq!(part.ids.count, 4);
        let users: Result<Vec<UserRecord>, _> = serde_json::from_slice(&part.json);
        assert_eq!(users.map(|u| u.len()).ok(), Some(4));
    }
}
