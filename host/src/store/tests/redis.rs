//! What only the Redis backend has: the host key shared by replicas and
//! checked against the store, values sealed before they reach Redis and
//! bound to their place, one namespace's keys under one hash tag, a Redis
//! restart survived, and an unreachable Redis answered, not waited for.

use redis::Commands;

use crate::store::{KEY_FILE, KvError, Quota, RedisTarget, Store, StoreError, Usage};

fn target(server: &redis_kit::RedisServer) -> RedisTarget {
    RedisTarget::parse(&server.url()).expect("url")
}

fn raw(server: &redis_kit::RedisServer) -> redis::Connection {
    redis::Client::open(server.url())
        .and_then(|c| c.get_connection())
        .expect("a raw connection")
}

#[test]
fn replicas_share_the_key_and_another_key_is_refused() {
    let server = redis_kit::RedisServer::start();
    let first = tempfile::tempdir().expect("tempdir");
    let a = Store::open_redis(&target(&server), first.path()).expect("first replica");
    a.namespace("plugin/a", Quota::default())
        .set("k", b"written by A")
        .expect("set");

    // A replica with a copy of the key reads what A wrote.
    let second = tempfile::tempdir().expect("tempdir");
    std::fs::copy(first.path().join(KEY_FILE), second.path().join(KEY_FILE)).expect("copy key");
    let b = Store::open_redis(&target(&server), second.path()).expect("second replica");
    assert_eq!(
        b.namespace("plugin/a", Quota::default())
            .get("k")
            .expect("get")
            .as_deref(),
        Some(&b"written by A"[..])
    );

    // Without the key file: refused, not a new key.
    let keyless = tempfile::tempdir().expect("tempdir");
    match Store::open_redis(&target(&server), keyless.path()) {
        Err(e @ StoreError::RedisKeyMissing { .. }) => {
            assert!(e.to_string().contains("copy host.key"), "{e}");
        }
        other => panic!("expected RedisKeyMissing, got {other:?}"),
    }
    assert!(!keyless.path().join(KEY_FILE).exists());

    // With another key: refused.
    let other = tempfile::tempdir().expect("tempdir");
    let _ = Store::open(other.path()).expect("a redb store makes another key");
    match Store::open_redis(&target(&server), other.path()) {
        Err(e @ StoreError::RedisKeyMismatch { .. }) => {
            assert!(e.to_string().contains("does not match"), "{e}");
        }
        other => panic!("expected RedisKeyMismatch, got {other:?}"),
    }
}

#[test]
fn redis_holds_only_sealed_values_under_one_hash_tag() {
    let server = redis_kit::RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open_redis(&target(&server), dir.path()).expect("store");
    let secret = b"refresh-token-5ecr3t";
    let ns = store.namespace("plugin/salesforce", Quota::default());
    ns.set("connection/tokens", secret).expect("set");
    ns.set("users/1", b"x").expect("set");

    let mut conn = raw(&server);
    let keys: Vec<String> = conn.keys("*").expect("keys");
    for key in &keys {
        if key == "pbx:meta:key-check" || key == "pbx:meta:namespaces" {
            continue;
        }
        assert!(
            key.starts_with("pbx:{plugin/salesforce}:"),
            "every key of the namespace carries its hash tag: {key}"
        );
        let kind: String = redis::cmd("TYPE").arg(key).query(&mut conn).expect("type");
        if kind == "string" {
            let value: Vec<u8> = conn.get(key).expect("get");
            assert!(
                !value.windows(secret.len()).any(|w| w == secret),
                "{key} holds the plaintext"
            );
        }
    }
    assert_eq!(
        keys.len(),
        2 + 2 + 2,
        "key check, namespace list, 2 values, index, usage"
    );
    let listed: Vec<String> = conn.smembers("pbx:meta:namespaces").expect("smembers");
    assert_eq!(listed, ["plugin/salesforce"]);

    // A sealed value moved to another namespace's key fails to open.
    let sealed: Vec<u8> = conn
        .get("pbx:{plugin/salesforce}:v:connection/tokens")
        .expect("sealed value");
    let _: () = conn
        .set("pbx:{plugin/other}:v:connection/tokens", sealed)
        .expect("move it");
    let other = store.namespace("plugin/other", Quota::default());
    match other.get("connection/tokens") {
        Err(KvError::Unavailable(why)) => assert!(why.contains("authentication"), "{why}"),
        got => panic!("a moved value must not open: {got:?}"),
    }

    // Clearing a namespace leaves none of its keys behind.
    ns.clear().expect("clear");
    let left: Vec<String> = conn.keys("pbx:{plugin/salesforce}:*").expect("keys");
    assert!(left.is_empty(), "{left:?}");
    assert_eq!(ns.usage().expect("usage"), Usage::default());
    let listed: Vec<String> = conn.smembers("pbx:meta:namespaces").expect("smembers");
    assert!(
        listed.is_empty(),
        "a cleared namespace is unlisted: {listed:?}"
    );
}

#[test]
fn a_redis_restart_is_survived_and_acknowledged_writes_kept() {
    let mut server = redis_kit::RedisServer::start_durable();
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open_redis(&target(&server), dir.path()).expect("store");
    let ns = store.namespace("plugin/a", Quota::default());
    ns.set("before", b"acknowledged").expect("set");

    // Killed: the store answers, and says what is wrong, without hanging.
    server.stop();
    match ns.get("before") {
        Err(KvError::Unavailable(why)) => assert!(why.contains("redis://127.0.0.1"), "{why}"),
        got => panic!("Redis is down: {got:?}"),
    }
    match ns.set("during", b"x") {
        Err(KvError::Unavailable(_)) => {}
        got => panic!("Redis is down: {got:?}"),
    }

    // Back (same port, same files): the store reconnects by itself. The
    // reconnection starts on the first failed request, so a request or
    // two may still fail; none may wrongly succeed.
    server.restart();
    let mut answered = None;
    for _ in 0..10 {
        match ns.get("before") {
            Ok(value) => {
                answered = Some(value);
                break;
            }
            Err(KvError::Unavailable(_)) => continue,
            Err(other) => panic!("{other}"),
        }
    }
    assert_eq!(answered.flatten().as_deref(), Some(&b"acknowledged"[..]));
    assert_eq!(
        ns.get("during").expect("get"),
        None,
        "a refused write left nothing"
    );
    ns.set("after", b"y").expect("writes again");
    assert_eq!(ns.usage().expect("usage").keys, 2);
}

/// Two replicas on one Redis and the raw messages Redis carried.
fn two_replicas(server: &redis_kit::RedisServer) -> (Vec<tempfile::TempDir>, Store, Store) {
    let first = tempfile::tempdir().expect("tempdir");
    let a = Store::open_redis(&target(server), first.path()).expect("first replica");
    let second = tempfile::tempdir().expect("tempdir");
    std::fs::copy(first.path().join(KEY_FILE), second.path().join(KEY_FILE)).expect("copy key");
    let b = Store::open_redis(&target(server), second.path()).expect("second replica");
    (vec![first, second], a, b)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// The next message `listener` hears, within 5 s.
fn hear(
    runtime: &tokio::runtime::Runtime,
    listener: &mut crate::store::Listener,
) -> crate::store::Heard {
    runtime
        .block_on(async {
            tokio::time::timeout(std::time::Duration::from_secs(5), listener.next()).await
        })
        .expect("heard within 5 s")
        .expect("a message")
}

#[test]
fn a_fleet_message_reaches_the_other_replica_sealed_and_never_its_sender() {
    let server = redis_kit::RedisServer::start();
    let (_dirs, a, b) = two_replicas(&server);
    assert!(a.is_shared() && b.is_shared());
    let mut a_hears = a.listen();
    let mut b_hears = b.listen();
    // What Redis carries, seen by a plain subscriber.
    let mut spy = raw(&server);
    let mut spy = spy.as_pubsub();
    spy.psubscribe("pbx:fleet:*").expect("psubscribe");

    a.announce("browser", b"pop-up for 1001: Ada Lovelace");
    let carried = spy.get_message().expect("a message on Redis");
    assert_eq!(carried.get_channel_name(), "pbx:fleet:browser");
    let bytes = carried.get_payload_bytes();
    assert!(
        !String::from_utf8_lossy(bytes).contains("Lovelace"),
        "sealed before it leaves the host"
    );

    let runtime = runtime();
    let heard = hear(&runtime, &mut b_hears);
    assert_eq!(heard.topic, "browser");
    assert_eq!(heard.payload, b"pop-up for 1001: Ada Lovelace");

    // B answers; A hears B's message and not its own, which came first.
    b.announce("plugins", b"changed");
    let heard = hear(&runtime, &mut a_hears);
    assert_eq!(
        (heard.topic.as_str(), &heard.payload[..]),
        ("plugins", &b"changed"[..])
    );

    // A's message moved to another topic fails authentication at B: not
    // heard.
    let mut forged = raw(&server);
    let _: i64 = redis::cmd("PUBLISH")
        .arg("pbx:fleet:plugins")
        .arg(bytes)
        .query(&mut forged)
        .expect("publish");
    a.announce("browser", b"after the forgery");
    let heard = hear(&runtime, &mut b_hears);
    assert_eq!(
        heard.payload, b"after the forgery",
        "the forged one was skipped"
    );
}

#[test]
fn a_tenants_fleet_messages_reach_only_the_same_tenant() {
    let server = redis_kit::RedisServer::start();
    let (_dirs, a, b) = two_replicas(&server);
    let mut acme_on_b = b.tenant("acme").listen();
    let mut globex_on_b = b.tenant("globex").listen();
    let mut host_on_b = b.listen();
    a.tenant("globex").announce("browser", b"for globex");
    a.tenant("acme").announce("browser", b"for acme");
    a.announce("browser", b"for the host's own PBX");
    let runtime = runtime();
    let heard = hear(&runtime, &mut acme_on_b);
    assert_eq!(
        (heard.topic.as_str(), &heard.payload[..]),
        ("browser", &b"for acme"[..])
    );
    assert_eq!(hear(&runtime, &mut globex_on_b).payload, b"for globex");
    assert_eq!(
        hear(&runtime, &mut host_on_b).payload,
        b"for the host's own PBX",
        "the host's own listener skips every tenant's"
    );
    // Nothing else reached them: another tenant's message does not even
    // wake a listener.
    for listener in [&acme_on_b, &globex_on_b, &host_on_b] {
        assert_eq!(listener.waiting(), 0);
    }
}

#[test]
fn fleet_messages_cross_a_redis_cluster() {
    let cluster = redis_kit::RedisCluster::start();
    let target = RedisTarget::parse(&cluster.url()).expect("url");
    let first = tempfile::tempdir().expect("tempdir");
    let a = Store::open_redis(&target, first.path()).expect("first replica");
    let second = tempfile::tempdir().expect("tempdir");
    std::fs::copy(first.path().join(KEY_FILE), second.path().join(KEY_FILE)).expect("copy key");
    let b = Store::open_redis(&target, second.path()).expect("second replica");
    let mut b_hears = b.listen();
    for n in 0..3 {
        a.announce("plugins", format!("changed {n}").as_bytes());
    }
    let runtime = runtime();
    for n in 0..3 {
        let heard = hear(&runtime, &mut b_hears);
        assert_eq!(heard.payload, format!("changed {n}").as_bytes());
    }
}

#[test]
fn the_embedded_store_has_no_fleet() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    assert!(!store.is_shared());
    store.announce("browser", b"nobody hears this");
    let heard = runtime().block_on(store.listen().next());
    assert_eq!(heard, None);
}

#[test]
fn the_fleet_hears_again_after_redis_restarts_and_says_what_may_be_missed() {
    let mut server = redis_kit::RedisServer::start_durable();
    let (_dirs, a, b) = two_replicas(&server);
    let mut b_hears = b.listen();
    let runtime = runtime();
    server.stop();
    server.restart();
    // B subscribes again by itself, and its listener hears that messages
    // may have been missed meanwhile (to read its state again).
    let resync = runtime.block_on(async {
        tokio::time::timeout(std::time::Duration::from_secs(30), b_hears.next()).await
    });
    let resync = resync.expect("heard within 30 s").expect("a message");
    assert_eq!(resync.topic, crate::store::RESYNC, "{resync:?}");
    assert!(resync.payload.is_empty());
    // What A says from now on reaches B (A's own connection may still be
    // coming back: it says it until B hears).
    let heard = runtime.block_on(async {
        for n in 0..100 {
            a.announce("plugins", format!("after the restart {n}").as_bytes());
            let wait = tokio::time::timeout(std::time::Duration::from_millis(200), b_hears.next());
            if let Ok(Some(heard)) = wait.await
                && heard.topic == "plugins"
            {
                return Some(heard);
            }
        }
        None
    });
    let heard = heard.expect("B hears A again after Redis restarted");
    assert!(
        String::from_utf8_lossy(&heard.payload).starts_with("after the restart"),
        "{heard:?}"
    );
}
