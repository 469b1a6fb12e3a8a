//! Fleet messages: what one host tells the other hosts sharing its store
//! (replicas on one Redis), such as "a pop-up for extension 1001" or "the
//! active plugin versions changed". Best effort, like the pop-ups and
//! nudges they carry: a host that was disconnected misses what was said
//! meanwhile, so whatever must not be missed is also in the store (the
//! plugin registry is, and replicas compare against it on a timer too).
//!
//! A message is sealed with the host key, bound to its topic, before it
//! leaves the host, exactly as stored values are: Redis sees only sealed
//! bytes, and a host with another key hears nothing. It carries the
//! sending store's origin id, so a host never hears itself.
//!
//! On the embedded store there is no other host: announcing does nothing
//! and nothing is heard.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::broadcast;

use super::Store;
use super::seal::aad;

/// The namespace part of a fleet message's binding (no stored namespace
/// is named like it: namespaces are `host/…` and `plugin/…`).
const FLEET_AAD: &str = "\0fleet";

/// The topic of what a listener hears when messages may have been missed
/// (the subscription was made again after Redis went away, or the
/// listener fell behind): whatever it follows, it should read again from
/// the store. Never announced by a host, never sealed.
pub const RESYNC: &str = "\0resync";

/// How many heard messages wait for a slow listener before the oldest are
/// skipped.
pub(super) const HEARD_BACKLOG: usize = 1024;

/// A sealed message as the backend carries it: the topic and
/// `origin (8 bytes, little endian) || sealed payload`.
pub(super) type Carried = (String, Vec<u8>);

/// The listeners' channels, one per store scope (the host's own PBX, each
/// tenant): a message wakes only the listeners of its scope, so with a
/// thousand tenants on one Redis a pop-up wakes one listener per replica,
/// not a thousand.
#[derive(Default)]
pub(super) struct Hearers {
    by_scope: Mutex<HashMap<String, broadcast::Sender<Carried>>>,
}

impl Hearers {
    /// A receiver of scope `scope`'s messages.
    pub(super) fn subscribe(&self, scope: &str) -> broadcast::Receiver<Carried> {
        self.scopes()
            .entry(scope.to_string())
            .or_insert_with(|| broadcast::channel(HEARD_BACKLOG).0)
            .subscribe()
    }

    /// Hand a message to its scope's listeners; a scope whose listeners
    /// are all gone (its tenant was closed) is forgotten.
    pub(super) fn deliver(&self, topic: &str, bytes: Vec<u8>) {
        let scope = scope_of(topic);
        let mut scopes = self.scopes();
        if let Some(sender) = scopes.get(scope)
            && sender.send((topic.to_string(), bytes)).is_err()
        {
            scopes.remove(scope);
        }
    }

    /// Tell every listener that messages may have been missed.
    pub(super) fn resync(&self) {
        self.scopes()
            .retain(|_, sender| sender.send((RESYNC.to_string(), Vec::new())).is_ok());
    }

    fn scopes(&self) -> std::sync::MutexGuard<'_, HashMap<String, broadcast::Sender<Carried>>> {
        self.by_scope.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The store scope a fleet topic was announced in: `t/NAME/` for a
/// tenant's, empty for the host's own PBX's.
fn scope_of(topic: &str) -> &str {
    topic
        .strip_prefix("t/")
        .and_then(|rest| rest.find('/'))
        .map_or("", |end| &topic[..2 + end + 1])
}

/// One message from another host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heard {
    /// What it is about, as announced.
    pub topic: String,
    /// The payload, opened.
    pub payload: Vec<u8>,
}

impl Heard {
    fn resync() -> Heard {
        Heard {
            topic: RESYNC.to_string(),
            payload: Vec::new(),
        }
    }
}

/// The messages other hosts announce.
pub struct Listener {
    store: Store,
    carried: Option<broadcast::Receiver<Carried>>,
}

impl Listener {
    /// Messages waiting for this listener (tests: what reached it).
    #[cfg(test)]
    pub(crate) fn waiting(&self) -> usize {
        self.carried.as_ref().map_or(0, broadcast::Receiver::len)
    }

    /// The next message from another host; `None` when the store closed or
    /// it has no other hosts (the embedded store). Messages that fail to
    /// open (another key, tampering) or that this host sent are skipped, as
    /// are, with a warning, those a slow listener fell behind on.
    pub async fn next(&mut self) -> Option<Heard> {
        let carried = self.carried.as_mut()?;
        loop {
            let (topic, bytes) = match carried.recv().await {
                Ok(message) => message,
                Err(broadcast::error::RecvError::Lagged(skipped)) => {
                    tracing::warn!(skipped, "fleet messages skipped: the host fell behind");
                    return Some(Heard::resync());
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            };
            if topic == RESYNC {
                return Some(Heard::resync());
            }
            if let Some(heard) = self.store.open_message(topic, &bytes) {
                return Some(heard);
            }
        }
    }
}

impl Store {
    /// Whether other hosts may share this store (it is on Redis): what one
    /// host does, the others must hear of.
    pub fn is_shared(&self) -> bool {
        self.shared.backend().is_shared()
    }

    /// Tell every other host sharing the store `payload` about `topic`
    /// (best effort; nothing on the embedded store).
    pub fn announce(&self, topic: &str, payload: &[u8]) {
        if !self.is_shared() {
            return;
        }
        // A tenant's messages are heard only by the same tenant elsewhere.
        let scoped = format!("{}{topic}", self.scope);
        let topic = scoped.as_str();
        let sealed = match self.shared.sealer().seal(&aad(FLEET_AAD, topic), payload) {
            Ok(sealed) => sealed,
            Err(e) => {
                tracing::warn!(topic, "fleet message not sent: {e}");
                return;
            }
        };
        let mut message = Vec::with_capacity(8 + sealed.len());
        message.extend_from_slice(&self.shared.origin().to_le_bytes());
        message.extend_from_slice(&sealed);
        self.shared.backend().publish(topic, message);
    }

    /// What other hosts announce from now on.
    pub fn listen(&self) -> Listener {
        Listener {
            store: self.clone(),
            carried: self.shared.backend().messages(&self.scope),
        }
    }

    fn open_message(&self, topic: String, bytes: &[u8]) -> Option<Heard> {
        // Another tenant's (or, for the host's own store, any tenant's)
        // messages are not for this listener.
        let short = topic.strip_prefix(&*self.scope)?;
        if short.contains('/') || bytes.len() < 8 {
            return None;
        }
        let short = short.to_string();
        let (origin, sealed) = bytes.split_at(8);
        if origin == self.shared.origin().to_le_bytes() {
            return None;
        }
        match self.shared.sealer().unseal(&aad(FLEET_AAD, &topic), sealed) {
            Some(payload) => Some(Heard {
                topic: short,
                payload,
            }),
            None => {
                tracing::warn!(
                    topic,
                    "a fleet message failed authentication (another host key?)"
                );
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_topic_s_scope_is_its_tenant_or_the_host_s_own() {
        assert_eq!(scope_of("t/acme/browser"), "t/acme/");
        assert_eq!(scope_of("t/acme/plugins"), "t/acme/");
        assert_eq!(scope_of("browser"), "");
        assert_eq!(scope_of("tenants"), "");
        assert_eq!(scope_of("t/"), "", "no tenant name: not a tenant's");
        assert_eq!(scope_of(RESYNC), "");
    }

    #[test]
    fn a_message_reaches_only_the_listeners_of_its_scope() {
        let hearers = Hearers::default();
        let mut acme = hearers.subscribe("t/acme/");
        let mut acme_too = hearers.subscribe("t/acme/");
        let globex = hearers.subscribe("t/globex/");
        let own = hearers.subscribe("");
        hearers.deliver("t/acme/browser", b"pop-up".to_vec());
        assert_eq!(
            (acme.len(), acme_too.len(), globex.len(), own.len()),
            (1, 1, 0, 0)
        );
        assert_eq!(
            acme.try_recv().expect("heard"),
            ("t/acme/browser".to_string(), b"pop-up".to_vec())
        );
        assert!(acme_too.try_recv().is_ok());
        hearers.deliver("plugins", b"changed".to_vec());
        assert_eq!((acme.len(), globex.len(), own.len()), (0, 0, 1));
        // A scope nobody listens to keeps nothing.
        hearers.deliver("t/initech/browser", b"nobody".to_vec());
        assert_eq!(hearers.scopes().len(), 3);
        // Everyone hears a resync.
        hearers.resync();
        assert_eq!((acme.len(), globex.len(), own.len()), (1, 1, 2));
        assert_eq!(acme.try_recv().expect("resync").0, RESYNC);
        // A tenant closed (its listeners gone) is forgotten at its next
        // message.
        drop(globex);
        hearers.deliver("t/globex/browser", b"too late".to_vec());
        assert!(!hearers.scopes().contains_key("t/globex/"));
    }
}
