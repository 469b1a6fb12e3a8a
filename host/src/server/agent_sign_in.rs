//! An agent's sign-in with their CRM account: the host's half. The plugin
//! runs the CRM's OAuth flow (`user-sign-in.begin` / `complete`, contract
//! 0.3.0) and answers the CRM user id; the host keeps the pending sign-ins
//! (bounded, expiring, bound to the browser by a cookie), maps the user to
//! their extension with `extension-for-user`, and opens the agent session.
//!
//! The CRM redirects agents and the administrator to the same callback
//! (`/crm/{plugin}/oauth/callback`); `oauth` hands a callback to
//! `complete` only when its `state` is one of the pending sign-ins here.
//!
//! `CrmSignIn` is the seam to the plugin runtime: `RuntimeSignIn` is the
//! real one, tests use a fake.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::now_ms;
use crate::runtime::{CallError, Runtime, wit};
use crate::store::{Namespace, Precondition, Quota, Store, Write};

use super::sessions::{Holder, SignedInWith};

/// The browser-binding cookie of a pending sign-in.
pub const BINDING_COOKIE: &str = "pbx_sign_in";
/// At most this many sign-ins wait for their callback at once.
pub const MAX_PENDING: usize = 1_000;
/// A pending sign-in is dropped after this long, whatever the plugin says.
pub const PENDING_MS: u64 = 10 * 60 * 1000;

/// Where the plugin sends the browser (contract: `sign-in-request`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignInRequest {
    /// The CRM's sign-in page.
    pub url: String,
    /// The single-use state the callback carries back.
    pub state: String,
    /// When the state stops being accepted (ms since the Unix epoch).
    pub expires_at_ms: u64,
}

/// How a sign-in ends without a user (contract: `sign-in-error`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignInError {
    /// The person declined.
    Denied(String),
    /// The CRM user is deactivated.
    Inactive(String),
    /// Unknown, used or expired state.
    Expired,
    /// Anything else, with the plugin's message.
    Failed(String),
}

/// Why the seam could not answer.
#[derive(Debug, thiserror::Error)]
pub enum SeamError {
    /// The plugin's contract has no agent sign-in (0.1.0, 0.2.0).
    #[error(
        "plugin {plugin} is built against a contract version without agent sign-in; ask its vendor for a version built against pbx:crm@0.3.0 or newer"
    )]
    Unsupported { plugin: String },
    /// The call failed.
    #[error(transparent)]
    Call(#[from] CallError),
}

/// The plugin calls agent sign-in needs.
pub(super) trait CrmSignIn {
    /// Whether plugin `plugin` can sign agents in.
    fn supports(&self, plugin: &str) -> bool;
    /// `user-sign-in.begin`.
    async fn begin(&self, plugin: &str, callback_url: &str) -> Result<SignInRequest, SeamError>;
    /// `user-sign-in.complete`: the CRM user id.
    async fn complete(
        &self,
        plugin: &str,
        callback_url: &str,
        query: &str,
    ) -> Result<Result<String, SignInError>, SeamError>;
    /// `extension-for-user`.
    async fn extension_for_user(
        &self,
        plugin: &str,
        user: &str,
    ) -> Result<Option<String>, SeamError>;
}

/// The seam over the real runtime.
pub(super) struct RuntimeSignIn<'r>(pub &'r Runtime);

impl CrmSignIn for RuntimeSignIn<'_> {
    fn supports(&self, plugin: &str) -> bool {
        self.0.supports_user_sign_in(plugin)
    }

    async fn begin(&self, plugin: &str, callback_url: &str) -> Result<SignInRequest, SeamError> {
        let request = self
            .0
            .plugin(plugin)
            .begin_user_sign_in(callback_url)
            .await
            .map_err(|e| seam_error(plugin, e))?;
        Ok(SignInRequest {
            url: request.url,
            state: request.state,
            expires_at_ms: request.expires_at_ms,
        })
    }

    async fn complete(
        &self,
        plugin: &str,
        callback_url: &str,
        query: &str,
    ) -> Result<Result<String, SignInError>, SeamError> {
        let answer = self
            .0
            .plugin(plugin)
            .complete_user_sign_in(callback_url, query)
            .await
            .map_err(|e| seam_error(plugin, e))?;
        Ok(answer.map_err(|e| match e {
            wit::SignInError::Denied(m) => SignInError::Denied(m),
            wit::SignInError::Inactive(m) => SignInError::Inactive(m),
            wit::SignInError::Expired => SignInError::Expired,
            wit::SignInError::Failed(e) => SignInError::Failed(e.message),
        }))
    }

    async fn extension_for_user(
        &self,
        plugin: &str,
        user: &str,
    ) -> Result<Option<String>, SeamError> {
        Ok(self.0.plugin(plugin).extension_for_user(user).await?)
    }
}

/// A plugin too old for agent sign-in is the seam's own refusal.
fn seam_error(plugin: &str, e: CallError) -> SeamError {
    match e {
        CallError::Unsupported { .. } => SeamError::Unsupported {
            plugin: plugin.to_string(),
        },
        e => SeamError::Call(e),
    }
}

/// One sign-in waiting for its callback.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Pending {
    plugin: String,
    binding: String,
    next: Option<String>,
    expires_at_ms: u64,
}

/// The store namespace of pending sign-ins, shared by replicas: the CRM
/// may send the agent's browser back to another replica than the one the
/// sign-in began on.
pub const PENDING_NAMESPACE: &str = "host/agent-sign-ins";

/// The pending sign-ins, by the SHA-256 of their `state` (store keys are
/// kept in clear; the state is the callback's single-use secret).
pub struct PendingSignIns {
    table: Namespace,
}

impl PendingSignIns {
    /// The pending sign-ins in `store`.
    pub fn new(store: &Store) -> Self {
        Self {
            table: store.namespace(PENDING_NAMESPACE, Quota::UNLIMITED),
        }
    }

    /// Whether `state` is a pending agent sign-in (expired ones included:
    /// their callback still gets the agent's refusal page).
    pub fn contains(&self, state: &str) -> bool {
        match self.table.get(&key_of(state)) {
            Ok(found) => found.is_some(),
            Err(e) => {
                tracing::error!("cannot read the pending agent sign-ins: {e}");
                false
            }
        }
    }

    /// How many are pending.
    pub(super) fn len(&self) -> usize {
        self.table.usage().map_or(0, |u| u.keys as usize)
    }

    /// Room for one more: expired ones go first; false when still full or
    /// the store cannot say. At the cap every pending sign-in is read, in
    /// one round trip (an anonymous flood must not cost a read each).
    async fn make_room(&self, now: u64) -> bool {
        if self.len() < MAX_PENDING {
            return true;
        }
        let Ok(keys) = self.table.list_keys_async(String::new()).await else {
            return false;
        };
        let Ok(values) = self.table.get_many_async(keys.clone()).await else {
            return false;
        };
        let expired: Vec<Write> = keys
            .into_iter()
            .zip(values)
            .filter(|(_, raw)| {
                raw.as_deref()
                    .and_then(|raw| serde_json::from_slice::<Pending>(raw).ok())
                    .is_none_or(|p| p.expires_at_ms <= now)
            })
            .map(|(key, _)| Write::Delete { key })
            .collect();
        if !expired.is_empty() && self.table.batch_async(Vec::new(), expired).await.is_err() {
            return false;
        }
        self.len() < MAX_PENDING
    }

    fn insert(&self, state: String, pending: Pending) -> bool {
        if self.len() >= MAX_PENDING {
            return false;
        }
        let Ok(value) = serde_json::to_vec(&pending) else {
            return false;
        };
        match self.table.set(&key_of(&state), &value) {
            Ok(()) => true,
            Err(e) => {
                tracing::error!("cannot keep a pending agent sign-in: {e}");
                false
            }
        }
    }

    /// The pending sign-in of `state`, removed: single use, also when two
    /// replicas get the same callback at once (only one removal succeeds).
    fn take(&self, state: &str) -> Option<Pending> {
        let key = key_of(state);
        let raw = self.table.get(&key).ok()??;
        let taken = self.table.batch(
            &[Precondition {
                key: key.clone(),
                expected: Some(raw.clone()),
            }],
            &[Write::Delete { key }],
        );
        taken.ok()?;
        serde_json::from_slice(&raw).ok()
    }
}

fn key_of(state: &str) -> String {
    hex::encode(Sha256::digest(state.as_bytes()))
}

/// Why an agent was not signed in: each a page that says what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The plugin's contract has no agent sign-in.
    Unsupported { plugin: String },
    /// The CRM user is associated with no extension.
    NoExtension { user: String },
    /// The CRM user is deactivated.
    Inactive(String),
    /// The person declined.
    Denied(String),
    /// Unknown, used or expired state, or another browser's callback.
    Expired,
    /// Too many sign-ins in progress.
    Busy,
    /// Anything else (CRM unreachable, plugin failure).
    Failed(String),
}

impl Refusal {
    /// The page's title and message.
    pub fn explain(&self) -> (&'static str, String) {
        match self {
            Refusal::Unsupported { plugin } => (
                "This CRM cannot sign agents in",
                format!(
                    "The installed {plugin} plugin is built against an older contract (pbx:crm 0.1.0 or 0.2.0) that has no agent sign-in. Ask your administrator to install a version built against 0.3.0 or newer, or to set a password for your extension."
                ),
            ),
            Refusal::NoExtension { user } => (
                "No extension for this CRM user",
                format!(
                    "You signed in as CRM user {user}, who is associated with no extension. Ask your administrator to associate {user} with an extension."
                ),
            ),
            Refusal::Inactive(message) => (
                "Your CRM user is deactivated",
                format!(
                    "The CRM says this user is deactivated{}. Ask your CRM administrator to activate it.",
                    suffix(message)
                ),
            ),
            Refusal::Denied(message) => (
                "Sign-in cancelled",
                format!(
                    "Access was not allowed{}. Sign in again and allow access to use your pop-ups.",
                    suffix(message)
                ),
            ),
            Refusal::Expired => (
                "This sign-in link has expired",
                "It was already used, is too old, or was started in another browser. Start the sign-in again from your agent page.".to_string(),
            ),
            Refusal::Busy => (
                "Too many sign-ins in progress",
                "Try again in a few minutes.".to_string(),
            ),
            Refusal::Failed(message) => ("Sign-in failed", message.clone()),
        }
    }
}

fn suffix(message: &str) -> String {
    if message.trim().is_empty() {
        String::new()
    } else {
        format!(" ({})", message.trim())
    }
}

impl From<SeamError> for Refusal {
    fn from(e: SeamError) -> Self {
        match e {
            SeamError::Unsupported { plugin } => Refusal::Unsupported { plugin },
            SeamError::Call(e) => Refusal::Failed(e.to_string()),
        }
    }
}

/// Start a sign-in with `plugin` for the browser holding `binding`: the
/// CRM page to send it to.
pub(super) async fn begin(
    crm: &impl CrmSignIn,
    pending: &PendingSignIns,
    plugin: &str,
    callback_url: &str,
    binding: &str,
    next: Option<String>,
) -> Result<String, Refusal> {
    if !crm.supports(plugin) {
        return Err(Refusal::Unsupported {
            plugin: plugin.to_string(),
        });
    }
    let now = now_ms();
    // Refuse before the plugin keeps anything.
    if !pending.make_room(now).await {
        return Err(Refusal::Busy);
    }
    let request = crm.begin(plugin, callback_url).await?;
    let expires_at_ms = request.expires_at_ms.min(now + PENDING_MS);
    let kept = pending.insert(
        request.state,
        Pending {
            plugin: plugin.to_string(),
            binding: binding.to_string(),
            next,
            expires_at_ms,
        },
    );
    if !kept {
        return Err(Refusal::Busy);
    }
    Ok(request.url)
}

/// The `state` parameter of a callback query.
pub fn state_of(query: &str) -> Option<String> {
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
}

/// A signed-in agent: who, and where to send them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedIn {
    /// The session's holder.
    pub holder: Holder,
    /// The page they asked for, if any.
    pub next: Option<String>,
}

/// Finish the sign-in whose callback carries `query` (its `state` is
/// pending, single use) in the browser holding `binding`.
pub(super) async fn complete(
    crm: &impl CrmSignIn,
    pending: &PendingSignIns,
    plugin: &str,
    callback_url: &str,
    query: &str,
    binding: Option<&str>,
) -> Result<SignedIn, Refusal> {
    let state = state_of(query).ok_or(Refusal::Expired)?;
    let entry = pending.take(&state).ok_or(Refusal::Expired)?;
    let same_browser = binding.is_some_and(|b| {
        use subtle::ConstantTimeEq;
        bool::from(b.as_bytes().ct_eq(entry.binding.as_bytes()))
    });
    if entry.plugin != plugin || !same_browser || entry.expires_at_ms <= now_ms() {
        return Err(Refusal::Expired);
    }
    let user = match crm.complete(plugin, callback_url, query).await? {
        Ok(user) => user,
        Err(SignInError::Denied(m)) => return Err(Refusal::Denied(m)),
        Err(SignInError::Inactive(m)) => return Err(Refusal::Inactive(m)),
        Err(SignInError::Expired) => return Err(Refusal::Expired),
        Err(SignInError::Failed(m)) => return Err(Refusal::Failed(m)),
    };
    let extension = crm
        .extension_for_user(plugin, &user)
        .await?
        .ok_or_else(|| Refusal::NoExtension { user: user.clone() })?;
    Ok(SignedIn {
        holder: Holder::Agent {
            extension,
            via: SignedInWith::Crm {
                plugin: plugin.to_string(),
                user,
            },
        },
        next: entry.next,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A CRM whose user `005ANN` is at 1001, `005OLD` is deactivated,
    /// `005NEW` has no extension; `deny` in the query is a refusal.
    struct FakeCrm {
        supported: bool,
        counter: Mutex<u32>,
    }

    impl FakeCrm {
        fn new(supported: bool) -> Self {
            Self {
                supported,
                counter: Mutex::new(0),
            }
        }
    }

    impl CrmSignIn for FakeCrm {
        fn supports(&self, _plugin: &str) -> bool {
            self.supported
        }
        async fn begin(&self, _p: &str, callback_url: &str) -> Result<SignInRequest, SeamError> {
            let mut n = self.counter.lock().unwrap_or_else(|p| p.into_inner());
            *n += 1;
            Ok(SignInRequest {
                url: format!("https://crm.example/login?redirect_uri={callback_url}&state=s{n}"),
                state: format!("s{n}"),
                expires_at_ms: now_ms() + 60_000,
            })
        }
        async fn complete(
            &self,
            _p: &str,
            _c: &str,
            query: &str,
        ) -> Result<Result<String, SignInError>, SeamError> {
            let user = url::form_urlencoded::parse(query.as_bytes())
                .find(|(k, _)| k == "user")
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default();
            Ok(match user.as_str() {
                "deny" => Err(SignInError::Denied("user denied".into())),
                "005OLD" => Err(SignInError::Inactive("old@example.com".into())),
                "replayed" => Err(SignInError::Expired),
                "broken" => Err(SignInError::Failed("the CRM is unreachable".into())),
                u => Ok(u.to_string()),
            })
        }
        async fn extension_for_user(
            &self,
            _p: &str,
            user: &str,
        ) -> Result<Option<String>, SeamError> {
            Ok((user == "005ANN").then(|| "1001".to_string()))
        }
    }

    fn pending_table() -> (tempfile::TempDir, PendingSignIns) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("store");
        (dir, PendingSignIns::new(&store))
    }

    async fn started(crm: &FakeCrm, pending: &PendingSignIns) -> String {
        let url = begin(
            crm,
            pending,
            "salesforce",
            "https://pbx/cb",
            "bind-1",
            Some("/agent/1001".into()),
        )
        .await
        .expect("begins");
        url.rsplit("state=").next().unwrap_or_default().to_string()
    }

    #[tokio::test]
    async fn a_crm_user_signs_in_to_their_extension_once() {
        let crm = FakeCrm::new(true);
        let (_dir, pending) = pending_table();
        let state = started(&crm, &pending).await;
        assert!(pending.contains(&state));
        let query = format!("code=c&state={state}&user=005ANN");
        let done = complete(
            &crm,
            &pending,
            "salesforce",
            "https://pbx/cb",
            &query,
            Some("bind-1"),
        )
        .await
        .expect("signed in");
        assert_eq!(done.holder.extension(), Some("1001"));
        assert_eq!(done.next.as_deref(), Some("/agent/1001"));
        // Replayed: refused.
        let again = complete(
            &crm,
            &pending,
            "salesforce",
            "https://pbx/cb",
            &query,
            Some("bind-1"),
        )
        .await;
        assert_eq!(again, Err(Refusal::Expired));
    }

    #[tokio::test]
    async fn another_browser_cannot_finish_the_sign_in() {
        let crm = FakeCrm::new(true);
        let (_dir, pending) = pending_table();
        let state = started(&crm, &pending).await;
        let query = format!("code=c&state={state}&user=005ANN");
        for binding in [None, Some("bind-2")] {
            let state = started(&crm, &pending).await;
            let query = format!("code=c&state={state}&user=005ANN");
            let r = complete(
                &crm,
                &pending,
                "salesforce",
                "https://pbx/cb",
                &query,
                binding,
            )
            .await;
            assert_eq!(r, Err(Refusal::Expired));
        }
        // Another plugin's callback path with this state: refused too.
        let r = complete(
            &crm,
            &pending,
            "other",
            "https://pbx/cb",
            &query,
            Some("bind-1"),
        )
        .await;
        assert_eq!(r, Err(Refusal::Expired));
    }

    #[tokio::test]
    async fn every_refusal_has_its_own_page() {
        let crm = FakeCrm::new(true);
        let (_dir, pending) = pending_table();
        for (user, want) in [
            (
                "005NEW",
                Refusal::NoExtension {
                    user: "005NEW".into(),
                },
            ),
            ("005OLD", Refusal::Inactive("old@example.com".into())),
            ("deny", Refusal::Denied("user denied".into())),
            ("replayed", Refusal::Expired),
            ("broken", Refusal::Failed("the CRM is unreachable".into())),
        ] {
            let state = started(&crm, &pending).await;
            let query = format!("state={state}&user={user}");
            let r = complete(
                &crm,
                &pending,
                "salesforce",
                "https://pbx/cb",
                &query,
                Some("bind-1"),
            )
            .await;
            assert_eq!(r.as_ref().err(), Some(&want));
        }
        let (_, message) = Refusal::NoExtension {
            user: "005NEW".into(),
        }
        .explain();
        assert!(
            message.contains("ask your administrator to associate 005NEW")
                || message.contains("Ask your administrator to associate 005NEW")
        );
    }

    #[tokio::test]
    async fn a_plugin_without_agent_sign_in_says_so() {
        let (_dir, pending) = pending_table();
        let r = begin(
            &FakeCrm::new(false),
            &pending,
            "salesforce",
            "https://pbx/cb",
            "b",
            None,
        )
        .await;
        assert_eq!(
            r,
            Err(Refusal::Unsupported {
                plugin: "salesforce".into()
            })
        );
        assert_eq!(pending.len(), 0, "a refused begin keeps nothing");
    }

    #[tokio::test]
    async fn pending_sign_ins_are_bounded() {
        let crm = FakeCrm::new(true);
        let (_dir, pending) = pending_table();
        for _ in 0..MAX_PENDING {
            started(&crm, &pending).await;
        }
        let r = begin(&crm, &pending, "salesforce", "https://pbx/cb", "b", None).await;
        assert_eq!(r, Err(Refusal::Busy));
        assert_eq!(pending.len(), MAX_PENDING);
    }
}
