//! What a replica does with what the others tell it (see the store's
//! `fleet`): a browser request recorded on another replica is shown to
//! the agent pages open here, and a change to the plugins makes this
//! replica follow the registry. So does hearing that messages may have
//! been missed (the subscription was made again after Redis went away,
//! or this host fell behind), and, as a last net, a timer every
//! [`FOLLOW_EVERY`]: cheap enough for many tenants, each following its
//! own registry.
//!
//! Only on a shared store; the embedded store has no other replica.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::capabilities::Services;
use crate::capabilities::browser::BROWSER_TOPIC;
use crate::runtime::Runtime;
use crate::runtime::fleet::PLUGINS_TOPIC;
use crate::store::{RESYNC, Store};

/// How often a replica compares what it serves with the registry even
/// when it heard nothing (messages, and word of missed ones, do it at once).
pub const FOLLOW_EVERY: Duration = Duration::from_secs(30);

/// Listen to the other replicas, until the returned task is aborted;
/// `None` on an unshared store.
pub fn spawn(
    store: &Store,
    runtime: Arc<Runtime>,
    services: Arc<Services>,
) -> Option<JoinHandle<()>> {
    if !store.is_shared() {
        return None;
    }
    let mut listener = store.listen();
    let follow = Arc::new(Notify::new());
    let follower = tokio::spawn(follow_registry(runtime, follow.clone()));
    Some(tokio::spawn(async move {
        // Ends the follower with this task.
        struct AbortOnDrop(JoinHandle<()>);
        impl Drop for AbortOnDrop {
            fn drop(&mut self) {
                self.0.abort();
            }
        }
        let _follower = AbortOnDrop(follower);
        let mut timer = tokio::time::interval(FOLLOW_EVERY);
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                heard = listener.next() => {
                    let Some(heard) = heard else {
                        return;
                    };
                    match heard.topic.as_str() {
                        BROWSER_TOPIC => {
                            if let Err(e) = services.browser.record_heard(&heard.payload) {
                                tracing::warn!("{e}");
                            }
                        }
                        PLUGINS_TOPIC | RESYNC => follow.notify_one(),
                        other => tracing::debug!(topic = other, "fleet message for nobody here"),
                    }
                }
                _ = timer.tick() => follow.notify_one(),
            }
        }
    }))
}

/// Follow the registry each time it is asked to (requests while one runs
/// make one more run, not one each), off the async workers: loading a
/// version compiles it.
async fn follow_registry(runtime: Arc<Runtime>, follow: Arc<Notify>) {
    let mut prepared = HashSet::new();
    loop {
        follow.notified().await;
        let runtime = runtime.clone();
        let mut known = std::mem::take(&mut prepared);
        let outcome = tokio::task::spawn_blocking(move || {
            let followed = runtime.follow_registry(&mut known);
            (followed, known)
        })
        .await;
        match outcome {
            Ok((followed, known)) => {
                prepared = known;
                if let Err(e) = followed {
                    tracing::warn!("cannot follow the plugin registry: {e}");
                }
            }
            Err(e) => tracing::error!("following the plugin registry stopped: {e}"),
        }
    }
}
