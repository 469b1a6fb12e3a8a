//! The namespace API: reads and writes, batches and their preconditions,
//! quotas, isolation between namespaces, and values kept out of `Debug`.
//! Each is the backends' contract: it runs on redb, on one Redis node and
//! (most of them) on a Redis Cluster (`super::backends!`).

use crate::store::{
    KvError, MAX_KEY_BYTES, MAX_VALUE_BYTES, Namespace, Precondition, Quota, Store, Usage,
};

use super::{del, set};

#[test]
fn store_is_send_sync_clone() {
    fn check<T: Send + Sync + Clone + 'static>() {}
    check::<Store>();
    check::<Namespace>();
}

fn round_trip(store: &Store) {
    let ns = store.namespace("plugin/a", Quota::default());
    assert_eq!(ns.get("k").unwrap(), None);
    ns.set("k", b"v1").unwrap();
    assert_eq!(ns.get("k").unwrap().as_deref(), Some(&b"v1"[..]));
    ns.set("k", b"value two").unwrap();
    assert_eq!(ns.get("k").unwrap().as_deref(), Some(&b"value two"[..]));
    ns.set("empty", b"").unwrap();
    assert_eq!(ns.get("empty").unwrap(), Some(Vec::new()));
    ns.set("b/2", b"x").unwrap();
    ns.set("b/1", b"x").unwrap();
    ns.set("c", b"x").unwrap();
    assert_eq!(ns.list_keys("").unwrap(), ["b/1", "b/2", "c", "empty", "k"]);
    assert_eq!(ns.list_keys("b/").unwrap(), ["b/1", "b/2"]);
    assert_eq!(ns.list_keys("zzz").unwrap(), Vec::<String>::new());
    ns.delete("k").unwrap();
    ns.delete("k").unwrap(); // absent: not an error
    assert_eq!(ns.get("k").unwrap(), None);
    assert_eq!(
        ns.usage().unwrap(),
        Usage {
            // "empty" + "", "b/2" + "x", "b/1" + "x", "c" + "x"
            keys: 4,
            bytes: 5 + 4 + 4 + 2
        }
    );
}

fn invalid_keys_and_values(store: &Store) {
    let ns = store.namespace("plugin/a", Quota::UNLIMITED);
    assert!(matches!(ns.set("", b"v"), Err(KvError::InvalidKey(_))));
    assert!(matches!(ns.get(""), Err(KvError::InvalidKey(_))));
    assert!(matches!(ns.delete(""), Err(KvError::InvalidKey(_))));
    let long = "x".repeat(MAX_KEY_BYTES + 1);
    let err = ns.set(&long, b"v").unwrap_err();
    assert!(
        matches!(&err, KvError::InvalidKey(m) if m.contains("1024")),
        "{err}"
    );
    ns.set(&"x".repeat(MAX_KEY_BYTES), b"v").unwrap();
    let err = ns.set("big", &vec![0; MAX_VALUE_BYTES + 1]).unwrap_err();
    assert!(
        matches!(&err, KvError::QuotaExceeded(m) if m.contains("16777216")),
        "{err}"
    );
    let err = ns
        .batch(
            &[Precondition {
                key: String::new(),
                expected: None,
            }],
            &[set("ok", b"v")],
        )
        .unwrap_err();
    assert!(matches!(err, KvError::InvalidKey(_)));
    assert_eq!(ns.get("ok").unwrap(), None);
}

fn namespaces_are_isolated(store: &Store) {
    let a = store.namespace("plugin/a", Quota::default());
    let b = store.namespace("plugin/b", Quota::default());
    // Names that prefix or extend each other must be isolated too.
    let a_ext = store.namespace("plugin/a/b", Quota::default());
    let a_nul = store.namespace("plugin/a\0", Quota::default());
    let hostile = [
        "/",
        "\0",
        "../plugin/b/k",
        "plugin/b/k",
        "plugin/b\0k",
        "b",
        "kv/plugin/b",
        "usage",
    ];
    for key in hostile {
        a.set(key, b"secret-of-a").unwrap();
    }
    b.set("k", b"of-b").unwrap();

    for other in [&b, &a_ext, &a_nul] {
        for key in hostile {
            assert_eq!(other.get(key).unwrap(), None, "{key:?}");
        }
    }
    assert_eq!(b.list_keys("").unwrap(), ["k"]);
    assert!(a_ext.list_keys("").unwrap().is_empty());
    assert!(a_nul.list_keys("").unwrap().is_empty());
    let mut expected: Vec<String> = hostile.iter().map(|k| k.to_string()).collect();
    expected.sort();
    assert_eq!(a.list_keys("").unwrap(), expected);
    assert_eq!(a.get("k").unwrap(), None);

    // Deletes and clears elsewhere leave `a` alone.
    for key in hostile {
        b.delete(key).unwrap();
        a_ext.delete(key).unwrap();
    }
    b.clear().unwrap();
    a_nul.clear().unwrap();
    assert_eq!(a.list_keys("").unwrap(), expected);
    assert_eq!(a.usage().unwrap().keys, hostile.len() as u64);
    assert_eq!(b.usage().unwrap(), Usage::default());
    assert_eq!(b.get("k").unwrap(), None);

    // A batch in `b` with preconditions on `a`'s keys sees them absent.
    b.batch(
        &[Precondition {
            key: "plugin/b/k".into(),
            expected: None,
        }],
        &[set("x", b"y")],
    )
    .unwrap();
    assert_eq!(
        a.get("plugin/b/k").unwrap().as_deref(),
        Some(&b"secret-of-a"[..])
    );
}

fn batch_applies_all_when_preconditions_hold(store: &Store) {
    let ns = store.namespace("plugin/a", Quota::default());
    ns.set("counter", b"1").unwrap();
    ns.batch(
        &[
            Precondition {
                key: "counter".into(),
                expected: Some(b"1".to_vec()),
            },
            Precondition {
                key: "lock".into(),
                expected: None,
            },
        ],
        &[set("counter", b"2"), set("lock", b"held"), del("absent")],
    )
    .unwrap();
    assert_eq!(ns.get("counter").unwrap().as_deref(), Some(&b"2"[..]));
    assert_eq!(ns.get("lock").unwrap().as_deref(), Some(&b"held"[..]));
    // Same key twice in one batch: the last write wins, counted once.
    ns.batch(&[], &[set("dup", b"1"), set("dup", b"22")])
        .unwrap();
    assert_eq!(ns.get("dup").unwrap().as_deref(), Some(&b"22"[..]));
    assert_eq!(
        ns.usage().unwrap(),
        Usage {
            keys: 3,
            bytes: 7 + 1 + 4 + 4 + 3 + 2
        }
    );
}

fn failing_precondition_writes_nothing(store: &Store) {
    let ns = store.namespace("plugin/a", Quota::default());
    ns.set("counter", b"1").unwrap();
    let usage = ns.usage().unwrap();
    let cases = [
        Precondition {
            key: "counter".into(),
            expected: Some(b"0".to_vec()),
        },
        Precondition {
            key: "counter".into(),
            expected: None,
        },
        Precondition {
            key: "absent".into(),
            expected: Some(Vec::new()),
        },
    ];
    for precondition in cases {
        let expected_key = precondition.key.clone();
        let ok = Precondition {
            key: "counter".into(),
            expected: Some(b"1".to_vec()),
        };
        let err = ns
            .batch(
                &[ok, precondition],
                &[set("counter", b"2"), set("new", b"x"), del("counter")],
            )
            .unwrap_err();
        assert!(
            matches!(&err, KvError::Conflict(k) if *k == expected_key),
            "{err}"
        );
        assert_eq!(ns.get("counter").unwrap().as_deref(), Some(&b"1"[..]));
        assert_eq!(ns.get("new").unwrap(), None);
        assert_eq!(ns.usage().unwrap(), usage);
    }
}

fn injected_failure_writes_nothing(store: &Store) {
    let ns = store.namespace("plugin/a", Quota::default());
    ns.set("a", b"old-a").unwrap();
    ns.set("b", b"old-b").unwrap();
    let usage = ns.usage().unwrap();
    let writes = [set("a", b"new-a"), del("b"), set("c", b"new-c")];
    for n in [0, 1, 2, 3, 10] {
        // The hook fires in whichever namespace batches next.
        store.fail_next_batch_after(n);
        let err = ns.batch(&[], &writes).unwrap_err();
        assert!(matches!(err, KvError::Unavailable(_)), "{err}");
        assert_eq!(ns.get("a").unwrap().as_deref(), Some(&b"old-a"[..]));
        assert_eq!(ns.get("b").unwrap().as_deref(), Some(&b"old-b"[..]));
        assert_eq!(ns.get("c").unwrap(), None);
        assert_eq!(ns.usage().unwrap(), usage);
    }
    // The hook is one-shot, and plain set/delete never consume it.
    store.fail_next_batch_after(0);
    ns.set("d", b"d").unwrap();
    assert!(ns.batch(&[], &writes).is_err());
    ns.batch(&[], &writes).unwrap();
    assert_eq!(ns.get("a").unwrap().as_deref(), Some(&b"new-a"[..]));
    assert_eq!(ns.get("b").unwrap(), None);
    assert_eq!(ns.list_keys("").unwrap(), ["a", "c", "d"]);
}

fn quota_on_keys(store: &Store) {
    let quota = Quota {
        max_keys: 2,
        max_bytes: u64::MAX,
    };
    let ns = store.namespace("plugin/a", quota);
    ns.set("a", b"1").unwrap();
    ns.set("b", b"2").unwrap();
    let err = ns.set("c", b"3").unwrap_err();
    assert!(
        matches!(&err, KvError::QuotaExceeded(m) if m == "2 keys"),
        "{err}"
    );
    assert_eq!(ns.get("c").unwrap(), None);
    // Overwriting an existing key adds no key.
    ns.set("a", b"11").unwrap();
    assert_eq!(ns.usage().unwrap(), Usage { keys: 2, bytes: 5 });

    // A batch that would end at 3 keys fails as a whole.
    let err = ns
        .batch(&[], &[set("b", b"22"), set("c", b"3")])
        .unwrap_err();
    assert!(matches!(err, KvError::QuotaExceeded(_)));
    assert_eq!(ns.get("b").unwrap().as_deref(), Some(&b"2"[..]));
    // One that ends within the quota passes, even if it passes through 3.
    ns.batch(&[], &[set("c", b"3"), del("a")]).unwrap();
    assert_eq!(ns.list_keys("").unwrap(), ["b", "c"]);
    assert_eq!(ns.usage().unwrap(), Usage { keys: 2, bytes: 4 });

    ns.delete("b").unwrap();
    assert_eq!(ns.usage().unwrap(), Usage { keys: 1, bytes: 2 });
    ns.set("d", b"4").unwrap();
    assert!(matches!(ns.set("e", b"5"), Err(KvError::QuotaExceeded(_))));
    ns.clear().unwrap();
    assert_eq!(ns.usage().unwrap(), Usage::default());
    ns.set("x", b"1").unwrap();
    ns.set("y", b"1").unwrap();
}

fn quota_on_bytes(store: &Store) {
    let quota = Quota {
        max_keys: u64::MAX,
        max_bytes: 20,
    };
    let ns = store.namespace("plugin/a", quota);
    ns.set("k1", b"12345678").unwrap(); // 10 bytes
    ns.set("k2", b"12345678").unwrap(); // 20 bytes: exactly at the limit
    assert_eq!(ns.usage().unwrap(), Usage { keys: 2, bytes: 20 });
    let err = ns.set("k3", b"").unwrap_err();
    assert!(
        matches!(&err, KvError::QuotaExceeded(m) if m == "20 bytes"),
        "{err}"
    );
    // A growing overwrite fails and leaves the old value.
    assert!(matches!(
        ns.set("k1", b"123456789"),
        Err(KvError::QuotaExceeded(_))
    ));
    assert_eq!(ns.get("k1").unwrap().as_deref(), Some(&b"12345678"[..]));
    // A shrinking overwrite frees exactly the difference.
    ns.set("k1", b"1234").unwrap();
    assert_eq!(ns.usage().unwrap(), Usage { keys: 2, bytes: 16 });
    ns.set("k3", b"12").unwrap();
    assert_eq!(ns.usage().unwrap(), Usage { keys: 3, bytes: 20 });

    // Batch: over the limit at the end fails as a whole.
    let err = ns
        .batch(&[], &[del("k3"), set("k4", b"12345")])
        .unwrap_err();
    assert!(matches!(err, KvError::QuotaExceeded(_)));
    assert_eq!(ns.get("k3").unwrap().as_deref(), Some(&b"12"[..]));
    assert_eq!(ns.usage().unwrap(), Usage { keys: 3, bytes: 20 });
    ns.batch(&[], &[del("k3"), set("k4", b"12")]).unwrap();
    assert_eq!(ns.usage().unwrap(), Usage { keys: 3, bytes: 20 });

    // Deletes give back exactly what was used.
    ns.delete("k1").unwrap();
    ns.delete("k2").unwrap();
    assert_eq!(ns.usage().unwrap(), Usage { keys: 1, bytes: 4 });
    ns.delete("k4").unwrap();
    assert_eq!(ns.usage().unwrap(), Usage::default());
    ns.set("big", &[7; 17]).unwrap();
    assert_eq!(ns.usage().unwrap(), Usage { keys: 1, bytes: 20 });
}

fn shrinking_is_allowed_over_a_lowered_quota(store: &Store) {
    store
        .namespace("plugin/a", Quota::UNLIMITED)
        .set("k", b"0123456789")
        .unwrap();
    let tight = store.namespace(
        "plugin/a",
        Quota {
            max_keys: 0,
            max_bytes: 5,
        },
    );
    tight.set("k", b"01234").unwrap();
    assert!(matches!(
        tight.set("k", b"012345"),
        Err(KvError::QuotaExceeded(_))
    ));
    tight.delete("k").unwrap();
    assert_eq!(tight.usage().unwrap(), Usage::default());
}

#[test]
fn debug_output_hides_values() {
    let write = set("k", b"hunter2");
    let precondition = Precondition {
        key: "k".into(),
        expected: Some(b"hunter2".to_vec()),
    };
    assert!(!format!("{write:?}{precondition:?}").contains("hunter2"));
}

/// Threads incrementing one counter by compare-and-swap, each retrying
/// on conflict: no increment is lost and none is applied twice.
fn contended_compare_and_swap_loses_no_increment(store: &Store) {
    let ns = store.namespace("plugin/a", Quota::default());
    ns.set("counter", b"0").unwrap();
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let ns = ns.clone();
            std::thread::spawn(move || {
                let mut conflicts = 0u32;
                for _ in 0..25 {
                    loop {
                        let current = ns.get("counter").unwrap();
                        let n: u64 = std::str::from_utf8(current.as_deref().unwrap_or(b"0"))
                            .unwrap()
                            .parse()
                            .unwrap();
                        match ns.batch(
                            &[Precondition {
                                key: "counter".into(),
                                expected: current,
                            }],
                            &[set("counter", (n + 1).to_string().as_bytes())],
                        ) {
                            Ok(()) => break,
                            Err(KvError::Conflict(key)) => {
                                assert_eq!(key, "counter");
                                conflicts += 1;
                            }
                            Err(other) => panic!("{other}"),
                        }
                    }
                }
                conflicts
            })
        })
        .collect();
    for handle in handles {
        handle.join().unwrap();
    }
    assert_eq!(ns.get("counter").unwrap().as_deref(), Some(&b"100"[..]));
    assert_eq!(
        ns.usage().unwrap(),
        Usage {
            keys: 1,
            bytes: 7 + 3
        }
    );
}

/// Two tenants' stores on one backend keep their namespaces apart, and
/// removing one tenant removes all of its data and nothing else.
fn tenants_are_apart_and_removed_whole(store: &Store) {
    let acme = store.tenant("acme");
    let globex = store.tenant("globex");
    acme.namespace("plugin/salesforce", Quota::default())
        .set("token", b"acme's")
        .unwrap();
    acme.namespace("host/extensions", Quota::default())
        .set("1001", b"Ada")
        .unwrap();
    globex
        .namespace("plugin/salesforce", Quota::default())
        .set("token", b"globex's")
        .unwrap();
    store
        .namespace("plugin/salesforce", Quota::default())
        .set("token", b"the host's own")
        .unwrap();
    let read = |s: &Store| {
        s.namespace("plugin/salesforce", Quota::default())
            .get("token")
            .unwrap()
    };
    assert_eq!(read(&acme).as_deref(), Some(&b"acme's"[..]));
    assert_eq!(read(&globex).as_deref(), Some(&b"globex's"[..]));
    assert_eq!(read(store).as_deref(), Some(&b"the host's own"[..]));
    assert_eq!(read(&acme.root()).as_deref(), Some(&b"the host's own"[..]));
    assert_eq!(acme.scope(), "t/acme/");

    let removed = acme.remove_tenant_data().unwrap();
    let names: Vec<&str> = removed.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["host/extensions", "plugin/salesforce"]);
    assert_eq!(removed[1].1.keys, 1);
    assert_eq!(read(&acme), None);
    assert_eq!(
        acme.namespace("host/extensions", Quota::default())
            .get("1001")
            .unwrap(),
        None
    );
    assert_eq!(read(&globex).as_deref(), Some(&b"globex's"[..]));
    assert_eq!(read(store).as_deref(), Some(&b"the host's own"[..]));
    assert!(acme.remove_tenant_data().unwrap().is_empty());
    assert!(
        store.remove_tenant_data().is_err(),
        "the host's own store holds every tenant's"
    );
}

super::backends! {
    redb_and_redis: [
        tenants_are_apart_and_removed_whole,
        round_trip,
        invalid_keys_and_values,
        namespaces_are_isolated,
        batch_applies_all_when_preconditions_hold,
        failing_precondition_writes_nothing,
        injected_failure_writes_nothing,
        quota_on_keys,
        quota_on_bytes,
        shrinking_is_allowed_over_a_lowered_quota,
        contended_compare_and_swap_loses_no_increment,
    ],
    cluster: [
        tenants_are_apart_and_removed_whole,
        round_trip,
        namespaces_are_isolated,
        failing_precondition_writes_nothing,
        quota_on_bytes,
        contended_compare_and_swap_loses_no_increment,
    ],
}
