//! The shared backend: Redis (one node, or a Redis Cluster), for replicas
//! of the host that serve the same PBXs (`pbx-host serve --store
//! redis://HOST:PORT`).
//!
//! Layout: every Redis key of one namespace carries the namespace as its
//! hash tag, `pbx:{NS}:…`, so all of them live in one slot of a Redis
//! Cluster and a batch can run in one Lua script there:
//!
//! * `pbx:{NS}:v:KEY`: the sealed value of `KEY` (a string);
//! * `pbx:{NS}:keys`: the namespace's keys, a sorted set with every score
//!   0, so `ZRANGE … BYLEX` lists a prefix in byte order;
//! * `pbx:{NS}:usage`: a hash, `keys` and `bytes`, changed by the same
//!   script that changes the values, so quota accounting cannot drift.
//!
//! `NS` escapes `%`, `{` and `}`, so no namespace name can end the hash tag
//! early and no two names share one. The key check (see `seal`) is
//! `pbx:meta:key-check`.
//!
//! A batch: the host reads the precondition keys' sealed values, opens
//! them and compares the plaintext (a mismatch is the batch's conflict, as
//! in redb); then one script checks that those sealed bytes are still the
//! ones read (sealing uses a fresh nonce, so equal bytes mean the same
//! write), computes the usage, checks the quota and applies every write,
//! or nothing. If another writer got between the read and the script,
//! the round starts again, at most [`MAX_ROUNDS`] times.
//!
//! Connections: a connection manager (one node) or a cluster connection,
//! both multiplexed, both reconnecting by themselves after Redis restarts.
//! They run on a runtime of the backend's own, so the store's synchronous
//! reads can wait for an answer from any thread, inside the host's tokio
//! workers too, without blocking the runtime that talks to Redis. The URL
//! may hold a password: messages name only the scheme, host and port.

use std::collections::HashSet;
use std::future::Future;
use std::path::Path;
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Script, Value};
use url::Url;

use super::backend::{Answer, Backend, Reply, SealedBatch, SealedWrite};
use super::fleet::{Carried, Hearers, RESYNC};
use super::keyfile::{KEY_FILE, create_key_file, ensure_data_dir, read_key_file};
use super::seal::{SEAL_OVERHEAD, Sealer};
use super::types::{KvError, StoreError, Usage};

/// Rounds of a batch whose precondition keys another writer keeps changing
/// between the read and the script, before it is answered as a conflict
/// (the plugin reads again and decides again).
const MAX_ROUNDS: usize = 16;

/// How long one store operation may wait for Redis, reconnection included,
/// before it is answered as unavailable.
const ANSWER_WITHIN: Duration = Duration::from_secs(5);

/// The key-check value's key.
const KEY_CHECK: &str = "pbx:meta:key-check";

/// Every namespace that was ever written (a set): how a tenant's
/// namespaces are found to remove them, with no `SCAN` over a cluster.
/// A namespace is added before its first write, so none holds data
/// unlisted.
const NAMESPACES: &str = "pbx:meta:namespaces";

/// Where the shared store is: one Redis node, or the seed nodes of a
/// Redis Cluster. Parsed from `--store`.
#[derive(Clone, PartialEq, Eq)]
pub enum RedisTarget {
    /// `redis://` or `rediss://` (TLS), one node.
    Node(Url),
    /// `redis+cluster://H1:P1,H2:P2` (or several URLs): the seed nodes.
    Cluster(Vec<Url>),
}

impl std::fmt::Debug for RedisTarget {
    // Never prints a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl RedisTarget {
    /// Parses `redis://…`, `rediss://…`, `redis+cluster://H:P,H:P` or
    /// several node URLs separated by commas (a cluster's seeds).
    pub fn parse(text: &str) -> Result<RedisTarget, String> {
        let fix = "fix: give --store redis://HOST:PORT (rediss:// for TLS), or redis+cluster://HOST:PORT,HOST:PORT for a Redis Cluster";
        let text = text.trim();
        let (cluster, rest) = match text.strip_prefix("redis+cluster://") {
            Some(rest) => (true, rest.to_string()),
            None => match text.strip_prefix("rediss+cluster://") {
                Some(rest) => (true, format!("rediss://{rest}")),
                None => (false, text.to_string()),
            },
        };
        let parts: Vec<String> = if cluster {
            let tls = rest.starts_with("rediss://");
            let hosts = rest.strip_prefix("rediss://").unwrap_or(&rest);
            // Credentials, if any, are on the first seed and apply to all.
            let (auth, hosts) = match hosts.rsplit_once('@') {
                Some((auth, hosts)) => (format!("{auth}@"), hosts),
                None => (String::new(), hosts),
            };
            let scheme = if tls { "rediss" } else { "redis" };
            hosts
                .split(',')
                .map(|h| format!("{scheme}://{auth}{}", h.trim_end_matches('/')))
                .collect()
        } else {
            text.split(',').map(str::to_string).collect()
        };
        let mut urls = Vec::new();
        for part in &parts {
            let url = Url::parse(part.trim())
                .map_err(|e| format!("{} is not a Redis URL ({e}); {fix}", redact_text(part)))?;
            if !matches!(url.scheme(), "redis" | "rediss") || url.host_str().is_none() {
                return Err(format!("{} is not a Redis URL; {fix}", redact(&url)));
            }
            urls.push(url);
        }
        match urls.len() {
            0 => Err(format!("no Redis node given; {fix}")),
            1 if !cluster => Ok(RedisTarget::Node(urls.remove(0))),
            _ => Ok(RedisTarget::Cluster(urls)),
        }
    }

    /// The target without credentials, for messages.
    pub fn describe(&self) -> String {
        match self {
            RedisTarget::Node(url) => redact(url),
            RedisTarget::Cluster(urls) => format!(
                "Redis Cluster {}",
                urls.iter().map(redact).collect::<Vec<_>>().join(",")
            ),
        }
    }
}

/// `scheme://host:port`, never the user or password.
fn redact(url: &Url) -> String {
    format!(
        "{}://{}:{}",
        url.scheme(),
        url.host_str().unwrap_or("?"),
        url.port().unwrap_or(6379)
    )
}

/// What can be shown of text that did not parse as a URL: up to any `@`.
fn redact_text(text: &str) -> String {
    match text.rsplit_once('@') {
        Some((_, hosts)) => format!("…@{hosts}"),
        None => text.to_string(),
    }
}

/// A connection to one node or to a cluster.
#[derive(Clone)]
enum Conn {
    Node(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Node(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Node(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Node(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// The Redis backend.
pub(super) struct RedisBackend {
    /// Talks to Redis.
    runtime: IoRuntime,
    conn: Conn,
    sealer: Sealer,
    apply: Script,
    clear: Script,
    /// For messages.
    target: String,
    /// Fleet messages heard on Redis (see `fleet`), for the listeners of
    /// their scope.
    heard: Arc<Hearers>,
    /// Namespaces this host has seen in [`NAMESPACES`], so a batch adds its
    /// namespace there once per process, not once per batch.
    listed: Arc<Mutex<HashSet<String>>>,
}

/// The backend's own runtime, shut down in the background when dropped:
/// that is allowed inside another runtime too, where a plain drop panics
/// (a store that failed to open is dropped in the host's async start).
struct IoRuntime(Option<tokio::runtime::Runtime>);

impl IoRuntime {
    fn get(&self) -> Option<&tokio::runtime::Runtime> {
        self.0.as_ref()
    }
}

impl Drop for IoRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

impl RedisBackend {
    /// Connects to `target` and unlocks the host key `DATA_DIR/host.key`:
    /// every replica sharing the store needs the same key file. The first
    /// host to use a store leaves a key check in it; a host with another
    /// key is refused, as one without a key while the store has a check.
    pub(super) fn open(
        target: &RedisTarget,
        data_dir: &Path,
    ) -> Result<(RedisBackend, Sealer), StoreError> {
        ensure_data_dir(data_dir)?;
        let store = target.describe();
        let io = IoRuntime(Some(
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("store-redis")
                .enable_all()
                .build()
                .map_err(|e| StoreError::Redis {
                    store: store.clone(),
                    reason: format!("cannot start its I/O thread: {e}"),
                })?,
        ));
        let Some(runtime) = io.get() else {
            return Err(StoreError::Redis {
                store,
                reason: "its I/O thread stopped".into(),
            });
        };
        let redis = |reason: String| StoreError::Redis {
            store: store.clone(),
            reason,
        };
        let conn = {
            let target = target.clone();
            wait(runtime, async move { connect(&target).await }).map_err(redis)?
        };
        let read_check = || {
            let mut conn = conn.clone();
            wait(runtime, async move {
                redis::cmd("GET")
                    .arg(KEY_CHECK)
                    .query_async::<Option<Vec<u8>>>(&mut conn)
                    .await
            })
            .map_err(redis)
        };
        let key_check = read_check()?;
        let key_path = data_dir.join(KEY_FILE);
        let key = match read_key_file(&key_path)? {
            Some(key) => key,
            None if key_check.is_some() => {
                return Err(StoreError::RedisKeyMissing {
                    key_path,
                    store: store.clone(),
                });
            }
            None => create_key_file(data_dir, &key_path)?,
        };
        let sealer = Sealer::new(key);
        let check = match key_check {
            Some(sealed) => sealed,
            None => {
                // Two replicas starting on an empty store: the first check
                // written wins, and both verify against it.
                let sealed = sealer.key_check().map_err(|e| redis(e.to_string()))?;
                let mut c = conn.clone();
                wait(runtime, async move {
                    redis::cmd("SET")
                        .arg(KEY_CHECK)
                        .arg(sealed)
                        .arg("NX")
                        .query_async::<Value>(&mut c)
                        .await
                })
                .map_err(redis)?;
                read_check()?.unwrap_or_default()
            }
        };
        if !sealer.opens_key_check(&check) {
            return Err(StoreError::RedisKeyMismatch { key_path, store });
        }
        let heard = Arc::new(Hearers::default());
        // Subscribed before the store is handed out, so a host hears every
        // message sent after it started.
        let (subscribed, first) = mpsc::sync_channel(1);
        runtime.spawn(subscribe(target.clone(), heard.clone(), subscribed));
        first
            .recv_timeout(ANSWER_WITHIN)
            .map_err(|_| redis("cannot subscribe to the fleet's messages".into()))?;
        let backend = RedisBackend {
            runtime: io,
            conn,
            sealer: sealer.clone(),
            apply: Script::new(APPLY),
            clear: Script::new(CLEAR),
            listed: Arc::new(Mutex::new(HashSet::new())),
            target: store,
            heard,
        };
        Ok((backend, sealer))
    }

    /// [`RedisBackend::run_async`], waited for on this thread (the
    /// synchronous reads; a tokio worker waits one loopback round trip).
    fn run<T, F>(&self, op: impl FnOnce(Conn) -> F) -> Result<T, KvError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, KvError>> + Send + 'static,
    {
        futures::executor::block_on(self.run_async(op))
    }

    /// Runs `op` with a connection on the backend's runtime; the answer
    /// comes back to whoever awaits it, on whatever runtime, and no thread
    /// waits meanwhile.
    fn run_async<T, F>(&self, op: impl FnOnce(Conn) -> F) -> Answer<T>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, KvError>> + Send + 'static,
    {
        let Some(runtime) = self.runtime.get() else {
            return Box::pin(std::future::ready(Err(KvError::Unavailable(
                "the store is closing".into(),
            ))));
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        let fut = op(self.conn.clone());
        let target = self.target.clone();
        runtime.spawn(async move {
            let answer = tokio::time::timeout(ANSWER_WITHIN, fut)
                .await
                .unwrap_or_else(|_| Err(did_not_answer(&target)));
            let _ = tx.send(answer);
        });
        Box::pin(async move {
            rx.await
                .unwrap_or_else(|_| Err(KvError::Unavailable("the store is closing".into())))
        })
    }
}

fn did_not_answer(target: &str) -> KvError {
    KvError::Unavailable(format!(
        "{target}: Redis did not answer within {} s",
        ANSWER_WITHIN.as_secs()
    ))
}

/// Runs `fut` on `runtime` and waits for it on this thread, at most
/// [`ANSWER_WITHIN`]; works from inside another runtime's workers too.
fn wait<T: Send + 'static>(
    runtime: &tokio::runtime::Runtime,
    fut: impl Future<Output = redis::RedisResult<T>> + Send + 'static,
) -> Result<T, String> {
    let (tx, rx) = mpsc::sync_channel(1);
    runtime.spawn(async move {
        let _ = tx.send(fut.await);
    });
    rx.recv_timeout(ANSWER_WITHIN + Duration::from_secs(1))
        .map_err(|_| format!("Redis did not answer within {} s", ANSWER_WITHIN.as_secs()))?
        .map_err(|e| e.to_string())
}

/// The fleet's channels: `pbx:fleet:TOPIC`.
const FLEET_CHANNELS: &str = "pbx:fleet:*";

/// Hears the fleet's messages for as long as the backend's runtime runs:
/// one subscription on the node (in a cluster, on a seed node: Redis
/// Cluster carries every publication to every node), made again after
/// Redis restarts or the node goes, trying each seed in turn. `subscribed`
/// hears of the first subscription.
async fn subscribe(target: RedisTarget, heard: Arc<Hearers>, subscribed: mpsc::SyncSender<()>) {
    use futures::StreamExt;
    let urls = match target {
        RedisTarget::Node(url) => vec![url],
        RedisTarget::Cluster(urls) => urls,
    };
    let mut subscribed = Some(subscribed);
    for url in urls.iter().cycle() {
        let pubsub = async {
            let client = redis::Client::open(url.as_str())?;
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.psubscribe(FLEET_CHANNELS).await?;
            redis::RedisResult::Ok(pubsub)
        };
        match tokio::time::timeout(ANSWER_WITHIN, pubsub).await {
            Ok(Ok(pubsub)) => {
                match subscribed.take() {
                    Some(first) => {
                        let _ = first.send(());
                    }
                    // Subscribed again: what was said meanwhile is missed,
                    // so every listener reads its state again.
                    None => heard.resync(),
                }
                let mut messages = pubsub.into_on_message();
                while let Some(message) = messages.next().await {
                    let Some(topic) = message.get_channel_name().strip_prefix("pbx:fleet:") else {
                        continue;
                    };
                    if topic == RESYNC {
                        // Only this task says it.
                        continue;
                    }
                    heard.deliver(topic, message.get_payload_bytes().to_vec());
                }
                tracing::warn!(store = %redact(url), "the fleet's subscription ended; subscribing again");
            }
            Ok(Err(e)) => {
                tracing::debug!(store = %redact(url), "cannot subscribe to the fleet's messages: {e}")
            }
            Err(_) => tracing::debug!(store = %redact(url), "subscribing timed out"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn connect(target: &RedisTarget) -> redis::RedisResult<Conn> {
    match target {
        RedisTarget::Node(url) => {
            let client = redis::Client::open(url.as_str())?;
            // Reconnection gives up within about a second, so a request
            // during an outage is answered "unavailable" at once instead
            // of waiting; the next request tries to reconnect again.
            let config = ConnectionManagerConfig::new()
                .set_number_of_retries(3)
                .set_min_delay(Duration::from_millis(50))
                .set_max_delay(Duration::from_millis(400))
                .set_connection_timeout(Some(ANSWER_WITHIN))
                .set_response_timeout(Some(ANSWER_WITHIN));
            Ok(Conn::Node(
                ConnectionManager::new_with_config(client, config).await?,
            ))
        }
        RedisTarget::Cluster(urls) => {
            let client = redis::cluster::ClusterClientBuilder::new(
                urls.iter().map(|u| u.as_str().to_string()),
            )
            .connection_timeout(ANSWER_WITHIN)
            .response_timeout(ANSWER_WITHIN)
            .build()?;
            Ok(Conn::Cluster(client.get_async_connection().await?))
        }
    }
}

/// The namespace as a hash tag: `%`, `{` and `}` escaped.
fn tag(namespace: &str) -> String {
    let mut out = String::with_capacity(namespace.len() + 2);
    out.push('{');
    for c in namespace.chars() {
        match c {
            '%' => out.push_str("%25"),
            '{' => out.push_str("%7B"),
            '}' => out.push_str("%7D"),
            c => out.push(c),
        }
    }
    out.push('}');
    out
}

fn value_key(tag: &str, key: &str) -> String {
    format!("pbx:{tag}:v:{key}")
}

fn keys_key(tag: &str) -> String {
    format!("pbx:{tag}:keys")
}

fn usage_key(tag: &str) -> String {
    format!("pbx:{tag}:usage")
}

/// The `ZRANGE … BYLEX` bounds of the keys starting with `prefix`: every
/// one sorts between the prefix itself and the prefix followed by 0xFF, a
/// byte no UTF-8 text holds.
fn lex_range(prefix: &str) -> (Vec<u8>, Vec<u8>) {
    if prefix.is_empty() {
        return (b"-".to_vec(), b"+".to_vec());
    }
    let mut min = b"[".to_vec();
    min.extend_from_slice(prefix.as_bytes());
    let mut max = min.clone();
    max.push(0xFF);
    (min, max)
}

fn unavailable(target: &str, error: redis::RedisError) -> KvError {
    // The error names the server's address at most, never the URL's
    // password (redis-rs does not print it).
    tracing::error!(store = target, %error, "store operation failed");
    KvError::Unavailable(format!("{target}: {error}"))
}

impl Backend for RedisBackend {
    fn is_shared(&self) -> bool {
        true
    }

    fn publish(&self, topic: &str, message: Vec<u8>) {
        let channel = format!("pbx:fleet:{topic}");
        let sent = self.run_async(move |mut conn| async move {
            redis::cmd("PUBLISH")
                .arg(channel)
                .arg(message)
                .query_async::<i64>(&mut conn)
                .await
                .map_err(|e| KvError::Unavailable(e.to_string()))
        });
        if let Some(runtime) = self.runtime.get() {
            runtime.spawn(async move {
                if let Err(e) = sent.await {
                    tracing::debug!("a fleet message was not sent: {e}");
                }
            });
        }
    }

    fn messages(&self, scope: &str) -> Option<tokio::sync::broadcast::Receiver<Carried>> {
        Some(self.heard.subscribe(scope))
    }

    fn get(&self, namespace: &str, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        let k = value_key(&tag(namespace), key);
        let target = self.target.clone();
        self.run(move |mut conn| async move {
            redis::cmd("GET")
                .arg(k)
                .query_async::<Option<Vec<u8>>>(&mut conn)
                .await
                .map_err(|e| unavailable(&target, e))
        })
    }

    fn list_keys(&self, namespace: &str, prefix: &str) -> Result<Vec<String>, KvError> {
        futures::executor::block_on(self.list_keys_async(namespace, prefix.to_string()))
    }

    fn get_many_async(&self, namespace: &str, keys: Vec<String>) -> Answer<Vec<Option<Vec<u8>>>> {
        let tag = tag(namespace);
        let keys: Vec<String> = keys.iter().map(|k| value_key(&tag, k)).collect();
        let target = self.target.clone();
        self.run_async(move |mut conn| async move {
            if keys.is_empty() {
                return Ok(Vec::new());
            }
            redis::cmd("MGET")
                .arg(keys)
                .query_async::<Vec<Option<Vec<u8>>>>(&mut conn)
                .await
                .map_err(|e| unavailable(&target, e))
        })
    }

    fn list_keys_async(&self, namespace: &str, prefix: String) -> Answer<Vec<String>> {
        let k = keys_key(&tag(namespace));
        let (min, max) = lex_range(&prefix);
        let target = self.target.clone();
        self.run_async(move |mut conn| async move {
            redis::cmd("ZRANGE")
                .arg(k)
                .arg(min)
                .arg(max)
                .arg("BYLEX")
                .query_async::<Vec<String>>(&mut conn)
                .await
                .map_err(|e| unavailable(&target, e))
        })
    }

    fn usage(&self, namespace: &str) -> Result<Usage, KvError> {
        let k = usage_key(&tag(namespace));
        let target = self.target.clone();
        let (keys, bytes) = self.run(move |mut conn| async move {
            redis::cmd("HMGET")
                .arg(k)
                .arg("keys")
                .arg("bytes")
                .query_async::<(Option<u64>, Option<u64>)>(&mut conn)
                .await
                .map_err(|e| unavailable(&target, e))
        })?;
        Ok(Usage {
            keys: keys.unwrap_or(0),
            bytes: bytes.unwrap_or(0),
        })
    }

    fn clear(&self, namespace: &str) -> Result<(), KvError> {
        let tag = tag(namespace);
        let script = self.clear.clone();
        let target = self.target.clone();
        let name = namespace.to_string();
        self.run(move |mut conn| async move {
            script
                .key(usage_key(&tag))
                .key(keys_key(&tag))
                .arg(format!("pbx:{tag}:v:"))
                .invoke_async::<i64>(&mut conn)
                .await
                .map_err(|e| unavailable(&target, e))?;
            // Unlisted only once its data is gone.
            redis::cmd("SREM")
                .arg(NAMESPACES)
                .arg(name)
                .query_async::<i64>(&mut conn)
                .await
                .map(drop)
                .map_err(|e| unavailable(&target, e))
        })?;
        self.listed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(namespace);
        Ok(())
    }

    fn namespaces(&self, prefix: &str) -> Result<Vec<String>, KvError> {
        let target = self.target.clone();
        let mut names = self.run(move |mut conn| async move {
            redis::cmd("SMEMBERS")
                .arg(NAMESPACES)
                .query_async::<Vec<String>>(&mut conn)
                .await
                .map_err(|e| unavailable(&target, e))
        })?;
        names.retain(|name| name.starts_with(prefix));
        names.sort();
        Ok(names)
    }

    fn submit(&self, batch: SealedBatch, reply: Reply) {
        let Some(runtime) = self.runtime.get() else {
            // Dropping the reply reads as "the store's writer stopped".
            return;
        };
        let (conn, sealer, script) = (self.conn.clone(), self.sealer.clone(), self.apply.clone());
        let target = self.target.clone();
        let listed = self.listed.clone();
        runtime.spawn(async move {
            let outcome = tokio::time::timeout(ANSWER_WITHIN, async {
                list_namespace(conn.clone(), &listed, &batch.namespace, &target).await?;
                apply(conn, &sealer, &script, &batch, &target).await
            })
            .await
            .unwrap_or_else(|_| Err(did_not_answer(&target)));
            reply.send(outcome);
        });
    }
}

/// Adds `namespace` to [`NAMESPACES`] unless this host did already.
async fn list_namespace(
    mut conn: Conn,
    listed: &Mutex<HashSet<String>>,
    namespace: &str,
    target: &str,
) -> Result<(), KvError> {
    if listed
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .contains(namespace)
    {
        return Ok(());
    }
    redis::cmd("SADD")
        .arg(NAMESPACES)
        .arg(namespace)
        .query_async::<i64>(&mut conn)
        .await
        .map_err(|e| unavailable(target, e))?;
    listed
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(namespace.to_string());
    Ok(())
}

/// One batch, in rounds: read and check the preconditions, then the
/// script, again if a precondition key changed in between.
async fn apply(
    mut conn: Conn,
    sealer: &Sealer,
    script: &Script,
    batch: &SealedBatch,
    target: &str,
) -> Result<(), KvError> {
    let tag = tag(&batch.namespace);
    let pre_keys: Vec<String> = batch
        .preconditions
        .iter()
        .map(|p| value_key(&tag, &p.key))
        .collect();
    for _ in 0..MAX_ROUNDS {
        let current: Vec<Option<Vec<u8>>> = if pre_keys.is_empty() {
            Vec::new()
        } else {
            redis::cmd("MGET")
                .arg(&pre_keys)
                .query_async(&mut conn)
                .await
                .map_err(|e| unavailable(target, e))?
        };
        for (precondition, sealed) in batch.preconditions.iter().zip(&current) {
            let plain = match sealed {
                None => None,
                Some(sealed) => {
                    Some(sealer.open_value(&batch.namespace, &precondition.key, sealed)?)
                }
            };
            if plain != precondition.expected {
                return Err(KvError::Conflict(precondition.key.clone()));
            }
        }
        let mut call = script.prepare_invoke();
        call.key(usage_key(&tag)).key(keys_key(&tag));
        for k in &pre_keys {
            call.key(k);
        }
        for w in &batch.writes {
            call.key(value_key(&tag, w.key()));
        }
        call.arg(pre_keys.len())
            .arg(batch.quota.max_keys)
            .arg(batch.quota.max_bytes)
            .arg(SEAL_OVERHEAD)
            .arg(if batch.injected_failure().is_some() {
                "1"
            } else {
                "0"
            });
        for sealed in &current {
            match sealed {
                Some(bytes) => call.arg("1").arg(bytes.as_slice()),
                None => call.arg("0").arg(""),
            };
        }
        for w in &batch.writes {
            match w {
                SealedWrite::Set { key, sealed, .. } => {
                    call.arg("S").arg(key).arg(sealed.as_slice())
                }
                SealedWrite::Delete { key } => call.arg("D").arg(key).arg(""),
            };
        }
        let answer: Vec<String> = call
            .invoke_async(&mut conn)
            .await
            .map_err(|e| unavailable(target, e))?;
        match answer.first().map(String::as_str) {
            Some("OK") => return Ok(()),
            Some("RETRY") => continue,
            Some("INJECTED") => {
                return Err(batch
                    .injected_failure()
                    .unwrap_or_else(|| KvError::Unavailable("injected failure".into())));
            }
            Some("QUOTA") if answer.get(1).map(String::as_str) == Some("keys") => {
                return Err(KvError::QuotaExceeded(format!(
                    "{} keys",
                    batch.quota.max_keys
                )));
            }
            Some("QUOTA") => {
                return Err(KvError::QuotaExceeded(format!(
                    "{} bytes",
                    batch.quota.max_bytes
                )));
            }
            Some("CORRUPT") => {
                let what = answer.get(1).cloned().unwrap_or_default();
                tracing::error!(
                    namespace = &*batch.namespace,
                    "usage record inconsistent: {what}"
                );
                return Err(KvError::Unavailable(format!(
                    "usage record of namespace {:?} is inconsistent: {what}",
                    batch.namespace
                )));
            }
            other => {
                return Err(KvError::Unavailable(format!(
                    "{target}: unexpected answer from the batch script: {other:?}"
                )));
            }
        }
    }
    // Another writer kept changing these keys: the plugin decides again.
    Err(KvError::Conflict(
        batch
            .preconditions
            .first()
            .map(|p| p.key.clone())
            .unwrap_or_default(),
    ))
}

/// A batch, atomically: the precondition keys still hold the sealed bytes
/// the host checked, then the usage and the quota (a batch that does not
/// grow a dimension is always allowed, so a namespace over a since-lowered
/// quota can still shrink), then every write. Nothing is written unless
/// everything holds.
///
/// KEYS: usage hash, key index, the precondition keys' values, the writes'
/// values. ARGV: number of preconditions, max keys, max bytes, seal
/// overhead, injected failure ("1"/"0"); per precondition: present
/// ("1"/"0") and the sealed bytes read; per write: "S" or "D", the kv key,
/// the sealed bytes.
const APPLY: &str = r#"
local npre = tonumber(ARGV[1])
local max_keys = tonumber(ARGV[2])
local max_bytes = tonumber(ARGV[3])
local overhead = tonumber(ARGV[4])
local injected = ARGV[5]
local a = 6
for i = 1, npre do
  local cur = redis.call('GET', KEYS[2 + i])
  if ARGV[a] == '1' then
    if cur ~= ARGV[a + 1] then return {'RETRY'} end
  elseif cur then
    return {'RETRY'}
  end
  a = a + 2
end
local before_keys = tonumber(redis.call('HGET', KEYS[1], 'keys') or '0')
local before_bytes = tonumber(redis.call('HGET', KEYS[1], 'bytes') or '0')
local keys, bytes = before_keys, before_bytes
local lengths = {}
local nwrites = #KEYS - 2 - npre
local w = a
for i = 1, nwrites do
  local vkey = KEYS[2 + npre + i]
  local op, key, sealed = ARGV[w], ARGV[w + 1], ARGV[w + 2]
  w = w + 3
  local old = lengths[vkey]
  if old == nil then
    local len = redis.call('STRLEN', vkey)
    if len == 0 then
      old = false
    elseif len < overhead then
      return {'CORRUPT', 'a stored value is truncated'}
    else
      old = len - overhead
    end
  end
  if old then
    keys = keys - 1
    bytes = bytes - (#key + old)
    if keys < 0 then return {'CORRUPT', 'its key count is too low'} end
    if bytes < 0 then return {'CORRUPT', 'its byte count is too low'} end
  end
  if op == 'S' then
    keys = keys + 1
    bytes = bytes + #key + (#sealed - overhead)
    lengths[vkey] = #sealed - overhead
  else
    lengths[vkey] = false
  end
end
if injected == '1' then return {'INJECTED'} end
if keys > max_keys and keys > before_keys then return {'QUOTA', 'keys'} end
if bytes > max_bytes and bytes > before_bytes then return {'QUOTA', 'bytes'} end
w = a
for i = 1, nwrites do
  local vkey = KEYS[2 + npre + i]
  local op, key, sealed = ARGV[w], ARGV[w + 1], ARGV[w + 2]
  w = w + 3
  if op == 'S' then
    redis.call('SET', vkey, sealed)
    redis.call('ZADD', KEYS[2], 0, key)
  else
    redis.call('DEL', vkey)
    redis.call('ZREM', KEYS[2], key)
  end
end
if keys == 0 then
  redis.call('DEL', KEYS[1])
else
  redis.call('HSET', KEYS[1], 'keys', string.format('%d', keys), 'bytes', string.format('%d', bytes))
end
return {'OK'}
"#;

/// Deletes a namespace: every value named in its key index, the index and
/// the usage. The values' keys share the namespace's hash tag, so they are
/// in the script's slot. KEYS: usage hash, key index. ARGV: the values'
/// key prefix.
const CLEAR: &str = r#"
local members = redis.call('ZRANGE', KEYS[2], 0, -1)
for i = 1, #members do
  redis.call('DEL', ARGV[1] .. members[i])
end
redis.call('DEL', KEYS[1], KEYS[2])
return #members
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_and_never_show_a_password() {
        let node = RedisTarget::parse("redis://:s3cret@127.0.0.1:6390/").expect("node");
        assert!(matches!(node, RedisTarget::Node(_)));
        assert_eq!(node.describe(), "redis://127.0.0.1:6390");
        assert!(!format!("{node:?}").contains("s3cret"));
        let cluster = RedisTarget::parse("redis+cluster://:s3cret@10.0.0.1:7000,10.0.0.2:7001")
            .expect("cluster");
        match &cluster {
            RedisTarget::Cluster(urls) => {
                assert_eq!(urls.len(), 2);
                assert!(urls.iter().all(|u| u.password() == Some("s3cret")));
            }
            other => panic!("not a cluster: {other:?}"),
        }
        assert_eq!(
            cluster.describe(),
            "Redis Cluster redis://10.0.0.1:7000,redis://10.0.0.2:7001"
        );
        let seeds = RedisTarget::parse("redis://a:7000,redis://b:7001").expect("seeds");
        assert!(matches!(seeds, RedisTarget::Cluster(ref u) if u.len() == 2));
        for bad in ["", "http://x:1", "redis://", "s3cret@nonsense"] {
            let err = RedisTarget::parse(bad).expect_err(bad);
            assert!(err.contains("fix: give --store"), "{err}");
            assert!(!err.contains("s3cret"), "{err}");
        }
    }

    #[test]
    fn hash_tags_keep_namespaces_apart() {
        assert_eq!(tag("plugin/salesforce"), "{plugin/salesforce}");
        // A name cannot close the tag early or forge another's.
        assert_eq!(tag("a}b"), "{a%7Db}");
        assert_eq!(tag("a%7Db"), "{a%257Db}");
        assert_ne!(tag("a}b"), tag("a%7Db"));
        assert_eq!(value_key(&tag("n"), "k:1"), "pbx:{n}:v:k:1");
    }
}
