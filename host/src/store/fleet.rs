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
            carried: self.shared.backend().messages(),
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
