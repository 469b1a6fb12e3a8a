//! The PBXs one host serves besides its own ("tenants"), as the operator
//! who hosts them keeps them: each one's name, public URL (its Homepage
//! URL, by whose `Host` requests reach it), status and kv-store quota. The
//! records are the host's own (`host/tenants` in the root store), so every
//! replica on a shared store serves the same tenants; what each tenant
//! keeps is in its own store scope (`Store::tenant`).

use serde::{Deserialize, Serialize};
use url::Url;

use crate::runtime::manifest::KvRequest;
use crate::store::{KvError, Namespace, Precondition, Quota, Store, Write};

/// The store namespace of the records (root store).
pub const TENANTS_NAMESPACE: &str = "host/tenants";

/// The name that stands for the host's own PBX in `--tenant` and the
/// operator API; no tenant may take it.
pub const DEFAULT_TENANT: &str = "default";

/// Whether a tenant serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TenantStatus {
    /// Its pages, API, callback and calls are served.
    Active,
    /// Everything it keeps stays, but nothing of it is served (503): the
    /// PBX sends its call events again later.
    Suspended,
    /// Being removed: no replica serves it any more, its data is being
    /// deleted (a removal that failed midway is run again).
    Removing,
}

/// One tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantRecord {
    /// Its name (see [`check_name`]).
    pub name: String,
    /// Its Homepage URL: requests whose `Host` is this URL's reach it.
    pub public_url: String,
    /// Whether it serves.
    pub status: TenantStatus,
    /// When the operator added it, ms since the Unix epoch.
    pub created_at_ms: u64,
    /// Each of its plugins' kv-store quota unless a grant says otherwise
    /// (the host's default when absent).
    #[serde(default)]
    pub kv: Option<KvRequest>,
    /// The digest of its own TLS certificate (kept in its scope), if it
    /// has one: a replica following the records loads it again when this
    /// changes, and only then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
}

impl TenantRecord {
    /// Its public URL, parsed (checked when it was added).
    pub fn url(&self) -> Result<Url, TenantError> {
        Url::parse(&self.public_url).map_err(|e| TenantError::BadUrl(format!("{e}")))
    }

    /// The authority requests to it carry in `Host` (host, and port
    /// unless the scheme's default), lowercase.
    pub fn authority(&self) -> Result<String, TenantError> {
        authority_of(&self.url()?)
    }
}

/// What the tenant operations refuse.
#[derive(Debug, thiserror::Error)]
pub enum TenantError {
    /// The name is not one a tenant may have.
    #[error(
        "{0:?} is not a tenant name: use 1 to 32 lowercase letters, digits and dashes, starting with a letter (and not \"default\")"
    )]
    BadName(String),
    /// The public URL cannot route requests.
    #[error("the public URL is not usable: {0}; give the tenant's https://FQDN")]
    BadUrl(String),
    /// Another tenant (or the host's own PBX) has that name or URL.
    #[error("{0}")]
    Taken(String),
    /// No tenant has that name.
    #[error("no tenant is named {0:?}; `pbx-host tenant list` shows them")]
    Unknown(String),
    /// The store failed or changed under the operation.
    #[error(transparent)]
    Store(#[from] KvError),
}

/// Checks a tenant name: it becomes a store scope (`t/NAME/`), a path
/// segment and a label, so only a safe alphabet.
pub fn check_name(name: &str) -> Result<(), TenantError> {
    let ok = (1..=32).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && name != DEFAULT_TENANT;
    if ok {
        Ok(())
    } else {
        Err(TenantError::BadName(name.to_string()))
    }
}

/// A public URL a tenant can be routed by: http(s), a host name, no path
/// beyond `/`, no credentials, query or fragment.
pub fn check_public_url(text: &str) -> Result<Url, TenantError> {
    let url = Url::parse(text).map_err(|e| TenantError::BadUrl(format!("{text:?}: {e}")))?;
    let bad = |why: &str| Err(TenantError::BadUrl(format!("{text:?} {why}")));
    if !matches!(url.scheme(), "https" | "http") {
        return bad("is not http(s)");
    }
    if url.host_str().is_none_or(str::is_empty) {
        return bad("names no host");
    }
    if !url.username().is_empty() || url.password().is_some() {
        return bad("carries credentials");
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return bad("has a path, query or fragment (the tenant is routed by its host)");
    }
    Ok(url)
}

/// What requests to `url` carry in `Host`, lowercase, the port only when
/// it is not the scheme's default.
pub fn authority_of(url: &Url) -> Result<String, TenantError> {
    let host = url
        .host_str()
        .ok_or_else(|| TenantError::BadUrl(format!("{url} names no host")))?
        .to_ascii_lowercase();
    Ok(match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host,
    })
}

/// The tenants' records in the store.
#[derive(Clone)]
pub struct Tenants {
    records: Namespace,
}

impl Tenants {
    /// The records in `store`'s root.
    pub fn new(store: &Store) -> Self {
        Self {
            records: store.root().namespace(TENANTS_NAMESPACE, Quota::UNLIMITED),
        }
    }

    /// Every tenant, by name, in two reads of the store (replicas follow
    /// this). Not from an async worker: on Redis it waits.
    pub fn list(&self) -> Result<Vec<TenantRecord>, TenantError> {
        let names = self.records.list_keys("")?;
        let values = futures::executor::block_on(self.records.get_many_async(names.clone()))?;
        let mut out = Vec::new();
        for (name, raw) in names.iter().zip(values) {
            if let Some(raw) = raw {
                out.push(decode(name, &raw)?);
            }
        }
        Ok(out)
    }

    /// The tenant named `name`.
    pub fn get(&self, name: &str) -> Result<TenantRecord, TenantError> {
        self.get_raw(name)?
            .map(|(record, _)| record)
            .ok_or_else(|| TenantError::Unknown(name.to_string()))
    }

    fn get_raw(&self, name: &str) -> Result<Option<(TenantRecord, Vec<u8>)>, TenantError> {
        let Some(raw) = self.records.get(name)? else {
            return Ok(None);
        };
        Ok(Some((decode(name, &raw)?, raw)))
    }

    /// Keeps a new tenant; refused when its name is taken (never replaced).
    /// The caller checked the name, URL and that no one else routes by it.
    pub fn add(&self, record: &TenantRecord) -> Result<(), TenantError> {
        let value = encode(record)?;
        match self.records.batch(
            &[Precondition {
                key: record.name.clone(),
                expected: None,
            }],
            &[Write::Set {
                key: record.name.clone(),
                value,
            }],
        ) {
            Err(KvError::Conflict(_)) => Err(TenantError::Taken(format!(
                "a tenant named {:?} exists already; `pbx-host tenant list` shows it",
                record.name
            ))),
            other => Ok(other?),
        }
    }

    /// Sets `name`'s status; its record as it is now.
    pub fn set_status(
        &self,
        name: &str,
        status: TenantStatus,
    ) -> Result<TenantRecord, TenantError> {
        self.change(name, |record| record.status = status)
    }

    /// Sets `name`'s public URL (checked by the caller); its record as it
    /// is now.
    pub fn set_public_url(&self, name: &str, url: &Url) -> Result<TenantRecord, TenantError> {
        self.change(name, |record| record.public_url = url.to_string())
    }

    /// Sets the digest of `name`'s own certificate (`None`: it has none);
    /// its record as it is now.
    pub fn set_certificate(
        &self,
        name: &str,
        digest: Option<String>,
    ) -> Result<TenantRecord, TenantError> {
        self.change(name, |record| record.certificate = digest)
    }

    /// Changes `name`'s record over what was read: a record another
    /// replica changed meanwhile is not overwritten (a conflict).
    fn change(
        &self,
        name: &str,
        edit: impl FnOnce(&mut TenantRecord),
    ) -> Result<TenantRecord, TenantError> {
        let (mut record, raw) = self
            .get_raw(name)?
            .ok_or_else(|| TenantError::Unknown(name.to_string()))?;
        edit(&mut record);
        self.records.batch(
            &[Precondition {
                key: name.to_string(),
                expected: Some(raw),
            }],
            &[Write::Set {
                key: name.to_string(),
                value: encode(&record)?,
            }],
        )?;
        Ok(record)
    }

    /// Forgets `name`'s record (its data is removed first, by the caller).
    pub fn remove(&self, name: &str) -> Result<(), TenantError> {
        Ok(self.records.delete(name)?)
    }
}

fn decode(name: &str, raw: &[u8]) -> Result<TenantRecord, TenantError> {
    serde_json::from_slice(raw).map_err(|e| {
        TenantError::Store(KvError::Unavailable(format!(
            "the record of tenant {name:?} is unreadable: {e}"
        )))
    })
}

fn encode(record: &TenantRecord) -> Result<Vec<u8>, TenantError> {
    serde_json::to_vec(record)
        .map_err(|e| TenantError::Store(KvError::Unavailable(format!("cannot encode: {e}"))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_a_safe_alphabet() {
        for good in ["acme", "a", "globex-2", "a234567890123456789012345678901x"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "Acme",
            "1acme",
            "-acme",
            "ac/me",
            "a.b",
            "default",
            "a2345678901234567890123456789012x",
            "acmé",
        ] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn public_urls_route_by_their_authority() {
        let url = check_public_url("https://PBX.Acme.example").expect("url");
        assert_eq!(authority_of(&url).expect("authority"), "pbx.acme.example");
        let url = check_public_url("http://acme.localhost:8080/").expect("url");
        assert_eq!(
            authority_of(&url).expect("authority"),
            "acme.localhost:8080"
        );
        let url = check_public_url("https://acme.example:443").expect("url");
        assert_eq!(authority_of(&url).expect("authority"), "acme.example");
        for bad in [
            "ftp://acme.example",
            "https://acme.example/pbx",
            "https://user:pw@acme.example",
            "https://acme.example/?q",
            "acme.example",
        ] {
            assert!(check_public_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_tenant_is_never_silently_replaced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("store");
        let tenants = Tenants::new(&store.tenant("ignored"));
        let record = TenantRecord {
            name: "acme".into(),
            public_url: "https://acme.example/".into(),
            status: TenantStatus::Active,
            created_at_ms: 1,
            kv: None,
            certificate: None,
        };
        tenants.add(&record).expect("add");
        let again = TenantRecord {
            public_url: "https://other.example/".into(),
            ..record.clone()
        };
        assert!(matches!(tenants.add(&again), Err(TenantError::Taken(_))));
        assert_eq!(tenants.get("acme").expect("get"), record);
        let suspended = tenants
            .set_status("acme", TenantStatus::Suspended)
            .expect("suspend");
        assert_eq!(suspended.status, TenantStatus::Suspended);
        assert_eq!(tenants.list().expect("list"), vec![suspended]);
        assert!(matches!(
            tenants.set_status("globex", TenantStatus::Active),
            Err(TenantError::Unknown(_))
        ));
        tenants.remove("acme").expect("remove");
        assert!(tenants.list().expect("list").is_empty());
    }
}
