//! Who may use the admin API and the portal: the admin token (CLI, scripts)
//! as a bearer token, or a portal session cookie obtained with that token;
//! and who an agent page's caller is (the administrator, or an agent
//! session scoped to one extension). The sessions themselves live in
//! `sessions`.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::http::{HeaderMap, header};
use subtle::ConstantTimeEq;

use super::sessions::{
    AGENT_COOKIE, ExtensionFailures, FAILURE_WINDOW, Holder, LoginLimiter, MAX_FAILURES,
    SessionPolicy, Sessions, cookie,
};
use crate::store::{KvError, Namespace, Precondition, Quota, Store, Write};

/// The portal's session cookie.
pub const SESSION_COOKIE: &str = "pbx_session";

/// Who may call what: the token, the sessions, the login rate limit.
pub struct Auth {
    token: KeptToken,
    /// Every browser session, the administrator's and agents'.
    pub sessions: Sessions,
    /// Failed logins (the portal's and agents'), per key, on this replica.
    pub limiter: LoginLimiter,
    /// Failed sign-ins per existing extension, on every replica.
    pub extension_failures: ExtensionFailures,
}

/// Who is calling an agent route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// The administrator (token or portal session): every extension.
    Administrator,
    /// An agent: only this extension.
    Agent(Holder),
    /// No valid credential.
    Anonymous,
}

impl Caller {
    /// Whether the caller may act for `extension`.
    pub fn may_use(&self, extension: &str) -> bool {
        match self {
            Caller::Administrator => true,
            Caller::Agent(holder) => holder.extension() == Some(extension),
            Caller::Anonymous => false,
        }
    }
}

/// How long a replica trusts the token it last read from a shared
/// record: an old token replaced on another replica is refused here
/// within this. A token that does not match is checked against the record
/// at once, so a new one works everywhere at once.
const TOKEN_RECHECK: Duration = Duration::from_secs(2);

/// A bearer token that can be replaced while the host serves: the host's
/// own admin token and the operator token (with the CLI's copy in the
/// data directory, and on a shared store the fleet's record besides), and
/// a tenant's admin token (its store's record only).
pub struct KeptToken {
    /// Where every replica reads the current token (a shared store, or a
    /// tenant's scope); `None`: this process alone holds the token.
    record: Option<Namespace>,
    /// The CLI's copy on this machine; without a record, the token's one
    /// lasting home.
    file: Option<PathBuf>,
    /// The token as last read, and when.
    known: Mutex<Option<(String, Instant)>>,
}

/// Why a token could not be replaced.
#[derive(Debug, thiserror::Error)]
pub enum ReplaceError {
    /// The record could not be written: nothing changed.
    #[error(transparent)]
    Store(#[from] KvError),
    /// The file that is the token's home could not be written: nothing
    /// changed.
    #[error(
        "cannot write {path}: {source}; nothing changed (fix the data directory's permissions or free space, then run the command again)"
    )]
    File {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

impl KeptToken {
    /// A token whose lasting home is `file` (an unshared store: one
    /// process serves it).
    pub fn in_file(file: PathBuf, token: String) -> Self {
        Self {
            record: None,
            file: Some(file),
            known: Mutex::new(Some((token, Instant::now()))),
        }
    }

    /// A token recorded in `record` (as read there: `token`), with this
    /// machine's copy for the CLI in `file`, if any.
    pub fn recorded(record: Namespace, file: Option<PathBuf>, token: String) -> Self {
        Self {
            record: Some(record),
            file,
            known: Mutex::new(Some((token, Instant::now()))),
        }
    }

    /// The admin token of the tenant whose store is `store`, as read at
    /// its opening.
    pub fn of_tenant(store: &Store, token: String) -> Self {
        Self::recorded(
            store.namespace(ADMIN_NAMESPACE, Quota::UNLIMITED),
            None,
            token,
        )
    }

    /// The token as this replica last read it.
    pub fn current(&self) -> Option<String> {
        lock(&self.known).as_ref().map(|(token, _)| token.clone())
    }

    /// Whether `candidate` is the token (constant time); an error when the
    /// record is to be read and its store cannot say.
    pub fn matches(&self, candidate: &str) -> Result<bool, KvError> {
        self.matches_at(candidate, Instant::now())
    }

    fn matches_at(&self, candidate: &str, now: Instant) -> Result<bool, KvError> {
        let same = |token: &str| -> bool { candidate.as_bytes().ct_eq(token.as_bytes()).into() };
        let known = lock(&self.known).clone();
        let Some(record) = &self.record else {
            return Ok(known.is_some_and(|(token, _)| same(&token)));
        };
        if let Some((token, read_at)) = &known
            && now.saturating_duration_since(*read_at) < TOKEN_RECHECK
            && same(token)
        {
            return Ok(true);
        }
        // Read with no lock held: other checks go on meanwhile. A removed
        // tenant's store has no token, so nothing matches.
        let current = record
            .get("token")?
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .filter(|t| t.len() >= 32);
        let matches = current.as_deref().is_some_and(same);
        let changed = current.as_ref() != known.as_ref().map(|(token, _)| token);
        if let (true, Some(file), Some(token)) = (changed, &self.file, &current) {
            // Replaced on another replica: this machine's CLI finds the
            // new one where it always looks.
            if let Err(e) = write_token_file(file, token) {
                tracing::warn!(file = %file.display(), "cannot keep the new token here: {e}");
            }
        }
        *lock(&self.known) = current.map(|token| (token, now));
        Ok(matches)
    }

    /// Replace the token with a new one, which this returns: the old one is
    /// refused at once here, and on other replicas within seconds. A
    /// refusal changes nothing.
    pub fn replace(&self) -> Result<String, ReplaceError> {
        let token = hex::encode(rand::random::<[u8; 32]>());
        match (&self.record, &self.file) {
            (Some(record), file) => {
                record.set("token", token.as_bytes())?;
                // The record is the truth; the file is a copy another
                // start or check writes again.
                if let Some(file) = file
                    && let Err(e) = write_token_file(file, &token)
                {
                    tracing::warn!(file = %file.display(), "the token was replaced, but its copy here could not be written: {e}");
                }
            }
            (None, Some(file)) => {
                write_token_file(file, &token).map_err(|source| ReplaceError::File {
                    path: file.display().to_string(),
                    source,
                })?;
            }
            (None, None) => {}
        }
        *lock(&self.known) = Some((token.clone(), Instant::now()));
        Ok(token)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// A token file: whole or not at all (a crash mid-write must not leave an
/// empty one), owner-only.
fn write_token_file(path: &Path, token: &str) -> std::io::Result<()> {
    crate::files::write_atomically_private(path, format!("{token}\n").as_bytes())
}

impl Auth {
    /// The admin token, the sessions in `store` (the PBX's own).
    pub fn new(token: KeptToken, store: &Store, policy: SessionPolicy) -> Self {
        Self {
            token,
            sessions: Sessions::new(store, policy),
            limiter: LoginLimiter::default(),
            extension_failures: ExtensionFailures::new(store, MAX_FAILURES, FAILURE_WINDOW),
        }
    }

    /// Whether `candidate` is the admin token (constant time); an error
    /// when a shared record is to be read and its store cannot say.
    pub fn token_matches(&self, candidate: &str) -> Result<bool, KvError> {
        self.token.matches(candidate)
    }

    /// A new admin token in place of the old one ([`KeptToken::replace`]);
    /// the caller ends the administrator's portal sessions.
    pub fn replace_token(&self) -> Result<String, ReplaceError> {
        self.token.replace()
    }

    /// A new portal session id.
    pub fn new_session(&self) -> Result<String, KvError> {
        self.sessions.create(Holder::Administrator)
    }

    /// End a session.
    pub fn end_session(&self, id: &str) -> Result<(), KvError> {
        self.sessions.end(id)
    }

    /// Whether the request carries the token or a live session; an error
    /// when the store cannot say whether its session is live.
    pub fn allows(&self, headers: &HeaderMap) -> Result<bool, KvError> {
        if let Some(bearer) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
        {
            return self.token_matches(bearer.trim());
        }
        match session_id(headers) {
            Some(id) => Ok(self.sessions.check(&id)? == Some(Holder::Administrator)),
            None => Ok(false),
        }
    }

    /// Who calls an agent route: the administrator first, else the agent
    /// session in the `pbx_agent` cookie (an admin session id in that
    /// cookie, or an agent's in `pbx_session`, counts for nothing).
    pub fn caller(&self, headers: &HeaderMap) -> Result<Caller, KvError> {
        if self.allows(headers)? {
            return Ok(Caller::Administrator);
        }
        let holder = match cookie(headers, AGENT_COOKIE) {
            Some(id) => self.sessions.check(&id)?,
            None => None,
        };
        Ok(match holder {
            Some(holder @ Holder::Agent { .. }) => Caller::Agent(holder),
            _ => Caller::Anonymous,
        })
    }
}

/// The session id in the request's cookies.
pub fn session_id(headers: &HeaderMap) -> Option<String> {
    cookie(headers, SESSION_COOKIE)
}

/// The admin token, created (mode 0600) at first start.
pub fn load_or_create_token(path: &Path) -> anyhow::Result<String> {
    if path.exists() {
        let token = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let token = token.trim().to_string();
        if token.len() >= 32 {
            return Ok(token);
        }
        anyhow::bail!(
            "{} holds no valid admin token; delete it and restart to create a new one",
            path.display()
        );
    }
    let token = hex::encode(rand::random::<[u8; 32]>());
    write_token_file(path, &token).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(token)
}

/// The store namespace of the fleet's admin token (on a shared store), in
/// each PBX's scope: a tenant's is its own administrator's.
const ADMIN_NAMESPACE: &str = "host/admin";

/// The store namespace of the operator token (root store).
const OPERATOR_NAMESPACE: &str = "host/operator";

/// The admin token of every replica sharing `store`: the one in the store
/// (sealed, as every value), which this replica then also keeps in `path`
/// for its CLI; the first replica puts its own there. On an unshared
/// store, the file's ([`load_or_create_token`]).
pub fn fleet_token(store: &Store, path: &Path) -> anyhow::Result<KeptToken> {
    kept_token(store, ADMIN_NAMESPACE, path, "admin")
}

/// The operator token, kept as the admin token is (`fleet_token`), in the
/// root store: it reaches the operator API and, through it, every tenant.
pub fn operator_token(store: &Store, path: &Path) -> anyhow::Result<KeptToken> {
    kept_token(&store.root(), OPERATOR_NAMESPACE, path, "operator")
}

fn kept_token(
    store: &Store,
    namespace: &str,
    path: &Path,
    what: &str,
) -> anyhow::Result<KeptToken> {
    let token = shared_token(store, namespace, path, what)?;
    Ok(if store.is_shared() {
        KeptToken::recorded(
            store.namespace(namespace, Quota::UNLIMITED),
            Some(path.to_path_buf()),
            token,
        )
    } else {
        KeptToken::in_file(path.to_path_buf(), token)
    })
}

/// A new admin token for the tenant whose store is `store`, replacing the
/// one there: left by an earlier attempt to add it (no record points to
/// it, so no one holds it), or the one the operator replaces.
pub fn new_tenant_token(store: &Store) -> Result<String, KvError> {
    let token = hex::encode(rand::random::<[u8; 32]>());
    store
        .namespace(ADMIN_NAMESPACE, Quota::UNLIMITED)
        .set("token", token.as_bytes())?;
    Ok(token)
}

/// The admin token of the tenant whose store is `store`.
pub fn tenant_token(store: &Store) -> anyhow::Result<String> {
    let bytes = store
        .namespace(ADMIN_NAMESPACE, Quota::UNLIMITED)
        .get("token")
        .context("cannot read the tenant's admin token")?
        .context(
            "the tenant has no admin token; issue one with `pbx-host tenant new-token NAME`",
        )?;
    String::from_utf8(bytes)
        .ok()
        .filter(|t| t.len() >= 32)
        .context("the tenant's admin token is unreadable; issue a new one with `pbx-host tenant new-token NAME`")
}

fn shared_token(store: &Store, namespace: &str, path: &Path, what: &str) -> anyhow::Result<String> {
    if !store.is_shared() {
        return load_or_create_token(path);
    }
    let admin = store.namespace(namespace, Quota::UNLIMITED);
    let shared = |bytes: Vec<u8>| -> anyhow::Result<String> {
        let token = String::from_utf8(bytes)
            .ok()
            .filter(|t| t.len() >= 32)
            .with_context(|| format!("the shared store holds no valid {what} token; fix: restore the store from a backup, or start the fleet on a new one"))?;
        let local = std::fs::read_to_string(path).unwrap_or_default();
        if local.trim() != token {
            write_token_file(path, &token)
                .with_context(|| format!("cannot write {}", path.display()))?;
            tracing::info!(file = %path.display(), "the fleet's {what} token is kept here");
        }
        Ok(token)
    };
    if let Some(bytes) = admin
        .get("token")
        .with_context(|| format!("cannot read the {what} token"))?
    {
        return shared(bytes);
    }
    let token = load_or_create_token(path)?;
    let first = admin.batch(
        &[Precondition {
            key: "token".into(),
            expected: None,
        }],
        &[Write::Set {
            key: "token".into(),
            value: token.clone().into_bytes(),
        }],
    );
    match first {
        Ok(()) => Ok(token),
        // Another replica started at the same moment and was first.
        Err(KvError::Conflict(_)) => shared(
            admin
                .get("token")
                .with_context(|| format!("cannot read the {what} token"))?
                .unwrap_or_default(),
        ),
        Err(e) => Err(anyhow::anyhow!("cannot keep the {what} token: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::sessions::Holder;

    #[test]
    fn a_new_tenant_token_holds_on_every_replica_and_the_old_one_stops_within_the_recheck() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("store").tenant("acme");
        let old = new_tenant_token(&store).expect("token");
        // Two replicas of the tenant, each with its own view of the token.
        let replica = || {
            Auth::new(
                KeptToken::of_tenant(&store, old.clone()),
                &store,
                SessionPolicy::default(),
            )
        };
        let (here, there) = (replica(), replica());
        let start = Instant::now();
        assert!(there.token.matches_at(&old, start).expect("store"));
        let admin_session = there
            .sessions
            .create(Holder::Administrator)
            .expect("session");

        // The operator issues a new token on `here`.
        let new = here.replace_token().expect("replaced");
        assert_ne!(new, old);
        assert!(!here.token.matches_at(&old, start).expect("store"));
        assert!(here.token.matches_at(&new, start).expect("store"));
        assert_eq!(here.sessions.end_administrators().expect("store"), 1);
        assert_eq!(there.sessions.check(&admin_session).expect("store"), None);

        // `there` takes the new one at once (it does not match what it
        // knew, so it reads the store), and refuses the old one after.
        assert!(there.token.matches_at(&new, start).expect("store"));
        assert!(!there.token.matches_at(&old, start).expect("store"));

        // A replica that has not looked since refuses the old token once
        // the recheck interval has passed.
        let late = replica();
        assert!(
            late.token
                .matches_at(&old, start + TOKEN_RECHECK / 2)
                .expect("store"),
            "trusted within the interval"
        );
        assert!(
            !late
                .token
                .matches_at(&old, start + TOKEN_RECHECK * 2)
                .expect("store")
        );
        assert!(!late.token.matches_at("", start).expect("store"));

        // A removed tenant keeps no token: nothing matches.
        store.remove_tenant_data().expect("removed");
        assert!(
            !there
                .token
                .matches_at(&new, start + TOKEN_RECHECK * 2)
                .expect("store")
        );
    }

    fn file_token(path: &Path) -> String {
        std::fs::read_to_string(path)
            .expect("token file")
            .trim()
            .to_string()
    }

    #[test]
    fn a_token_kept_in_its_file_is_replaced_there_and_lasts_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("admin-token");
        let old = load_or_create_token(&path).expect("token");
        let kept = KeptToken::in_file(path.clone(), old.clone());
        assert!(kept.matches(&old).expect("no store"));
        assert!(!kept.matches(&"e".repeat(64)).expect("no store"));
        assert!(!kept.matches("").expect("no store"));

        let new = kept.replace().expect("replaced");
        assert_ne!(new, old);
        assert!(!kept.matches(&old).expect("no store"), "refused at once");
        assert!(kept.matches(&new).expect("no store"));
        assert_eq!(file_token(&path), new, "the CLI's copy");
        assert_eq!(
            load_or_create_token(&path).expect("token"),
            new,
            "a restart keeps it"
        );
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("file").permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "owner-only");
        }

        // A file that cannot be written: refused, and nothing changed.
        let gone = KeptToken::in_file(dir.path().join("no-such-dir").join("token"), new.clone());
        let refused = gone.replace().expect_err("no directory");
        assert!(refused.to_string().contains("nothing changed"), "{refused}");
        assert!(gone.matches(&new).expect("no store"), "the old one holds");
    }

    #[test]
    fn a_recorded_token_replaced_on_one_replica_reaches_the_other_s_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("store");
        let record = || store.namespace("host/operator", Quota::UNLIMITED);
        let old = "a".repeat(64);
        record().set("token", old.as_bytes()).expect("set");
        // Two replicas' data directories, each with the CLI's copy.
        let (here_file, there_file) = (dir.path().join("here"), dir.path().join("there"));
        for file in [&here_file, &there_file] {
            write_token_file(file, &old).expect("file");
        }
        let here = KeptToken::recorded(record(), Some(here_file.clone()), old.clone());
        let there = KeptToken::recorded(record(), Some(there_file.clone()), old.clone());
        let start = Instant::now();

        let new = here.replace().expect("replaced");
        assert_eq!(file_token(&here_file), new);
        assert_eq!(file_token(&there_file), old, "not yet read there");
        // `there` is shown the new token: it reads the record, takes it,
        // and keeps it for its CLI.
        assert!(there.matches_at(&new, start).expect("store"));
        assert_eq!(file_token(&there_file), new);
        assert!(!there.matches_at(&old, start).expect("store"));
        // Shown the old one after the recheck interval, it finds out too.
        let late = KeptToken::recorded(record(), Some(there_file.clone()), old.clone());
        write_token_file(&there_file, &old).expect("file");
        assert!(
            !late
                .matches_at(&old, start + TOKEN_RECHECK * 2)
                .expect("store")
        );
        assert_eq!(file_token(&there_file), new);
    }
}
