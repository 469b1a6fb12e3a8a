//! Writes through the group-commit writer: a refused batch inside a group,
//! async callers, and concurrent writers' accounting.

use std::sync::mpsc;
use std::thread;

use crate::store::backend::Reply;
use crate::store::writer::{Job, commit_group};
use crate::store::{KvError, Precondition, Quota, Store, Usage, Write};

use super::{del, open_temp, open_temp_raw, set};

#[test]
fn a_refused_batch_in_a_group_leaves_the_others_whole() {
    let (_dir, store, db, sealer) = open_temp_raw();
    let ns = store.namespace("plugin/a", Quota::default());
    ns.set("counter", b"1").unwrap();
    let (replies, answers): (Vec<_>, Vec<_>) = (0..4).map(|_| mpsc::sync_channel(1)).unzip();
    let mut replies = replies.into_iter();
    let mut job = |pre: Vec<Precondition>, writes: &[Write]| {
        let reply = Reply::Blocking(replies.next().unwrap());
        let batch = ns.seal_batch(pre, writes, None).unwrap();
        Job { batch, reply }
    };
    let expect = |value: &[u8]| Precondition {
        key: "counter".into(),
        expected: Some(value.to_vec()),
    };
    // Two writers read "1"; the first to commit wins, the second is
    // refused, and a third sees the first one's write in the same group.
    let group = vec![
        job(vec![expect(b"1")], &[set("counter", b"2"), set("a", b"x")]),
        job(vec![expect(b"1")], &[set("counter", b"9"), set("b", b"y")]),
        job(vec![expect(b"2")], &[set("counter", b"3"), del("a")]),
        job(vec![], &[set("c", b"zz"), set("c", b"z")]),
    ];
    commit_group(&db, &sealer, group);
    let results: Vec<_> = answers.iter().map(|rx| rx.recv().unwrap()).collect();
    assert!(results[0].is_ok() && results[2].is_ok() && results[3].is_ok());
    assert!(matches!(&results[1], Err(KvError::Conflict(k)) if k == "counter"));
    assert_eq!(ns.get("counter").unwrap().as_deref(), Some(&b"3"[..]));
    assert_eq!(ns.get("a").unwrap(), None);
    assert_eq!(
        ns.get("b").unwrap(),
        None,
        "the refused batch wrote nothing"
    );
    assert_eq!(ns.get("c").unwrap().as_deref(), Some(&b"z"[..]));
    // counter(7+1) + c(1+1): the accounting follows every write in order.
    assert_eq!(ns.usage().unwrap(), Usage { keys: 2, bytes: 10 });
}

#[tokio::test]
async fn async_writes_answer_without_blocking_the_runtime() {
    let (_dir, store) = open_temp();
    let ns = store.namespace("plugin/a", Quota::default());
    let writes = (0..32).map(|i| {
        let ns = ns.clone();
        tokio::spawn(async move { ns.set_async(format!("k{i}"), vec![7; 3]).await })
    });
    for w in writes {
        w.await.unwrap().unwrap();
    }
    ns.batch_async(
        vec![Precondition {
            key: "k0".into(),
            expected: Some(vec![7; 3]),
        }],
        vec![del("k0")],
    )
    .await
    .unwrap();
    assert_eq!(ns.list_keys("k").unwrap().len(), 31);
    let bytes: usize = (1..32).map(|i| format!("k{i}").len() + 3).sum();
    assert_eq!(
        ns.usage().unwrap(),
        Usage {
            keys: 31,
            bytes: bytes as u64
        }
    );
}

fn concurrent_writers_keep_exact_accounting(store: &Store) {
    let ns = store.namespace("plugin/a", Quota::default());
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let ns = ns.clone();
            thread::spawn(move || {
                for i in 0..25 {
                    ns.set(&format!("t{t}/{i:02}"), b"12345").unwrap();
                    if i % 5 == 0 {
                        ns.delete(&format!("t{t}/{i:02}")).unwrap();
                    }
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().unwrap();
    }
    assert_eq!(
        ns.usage().unwrap(),
        Usage {
            keys: 80,
            bytes: 80 * 10
        }
    );
    assert_eq!(ns.list_keys("").unwrap().len(), 80);
}

super::backends! {
    redb_and_redis: [concurrent_writers_keep_exact_accounting],
    cluster: [concurrent_writers_keep_exact_accounting],
}
