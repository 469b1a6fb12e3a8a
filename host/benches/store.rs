//! kv batch latency, side by side in one run: the embedded redb store
//! against Redis (one node started here on loopback, append-only file with
//! an fsync per write, so both acknowledge only what is on disk), and a
//! 3-master Redis Cluster. Each batch is what a plugin's compare-and-swap
//! is: one precondition on a key's current value and two writes.
//!
//! Run with `cargo xtask bench` (it installs redis-server first).

use std::time::{Duration, Instant};

use pbx_host::store::{Precondition, Quota, RedisTarget, Store, Write};

const BATCHES: usize = 2_000;
const WARM_UP: usize = 200;

fn main() {
    let redb_dir = tempfile::tempdir().expect("tempdir");
    let redb = Store::open(redb_dir.path()).expect("redb store");

    let node = redis_kit::RedisServer::start_durable();
    let node_dir = tempfile::tempdir().expect("tempdir");
    let on_node = Store::open_redis(
        &RedisTarget::parse(&node.url()).expect("url"),
        node_dir.path(),
    )
    .expect("Redis store");

    let cluster = redis_kit::RedisCluster::start();
    let cluster_dir = tempfile::tempdir().expect("tempdir");
    let on_cluster = Store::open_redis(
        &RedisTarget::parse(&cluster.url()).expect("url"),
        cluster_dir.path(),
    )
    .expect("Redis Cluster store");

    println!("store: {BATCHES} batches one after another (1 precondition, 2 writes of 200 bytes)");
    println!(
        "store: {:<34} {:>10} {:>10} {:>10}",
        "backend", "p50", "p99", "batches/s"
    );
    let mut figures = Vec::new();
    for (name, store) in [
        ("redb (fsync per group commit)", &redb),
        ("Redis, one node (appendfsync always)", &on_node),
        ("Redis Cluster, 3 masters (no AOF)", &on_cluster),
    ] {
        let (p50, p99, per_sec) = measure(store);
        println!(
            "store: {name:<34} {:>7.3} ms {:>7.3} ms {per_sec:>10.0}",
            ms(p50),
            ms(p99)
        );
        figures.push((p50, p99));
    }
    println!(
        "store: Redis / redb: p50 {:.2}, p99 {:.2}",
        ms(figures[1].0) / ms(figures[0].0),
        ms(figures[1].1) / ms(figures[0].1)
    );
}

fn measure(store: &Store) -> (Duration, Duration, f64) {
    let ns = store.namespace("plugin/bench", Quota::UNLIMITED);
    let value = vec![b'x'; 200];
    let mut current: Option<Vec<u8>> = None;
    let mut took = Vec::with_capacity(BATCHES);
    let started = Instant::now();
    for i in 0..WARM_UP + BATCHES {
        let next = format!("{i:0>200}").into_bytes();
        let t = Instant::now();
        ns.batch(
            &[Precondition {
                key: "counter".into(),
                expected: current.clone(),
            }],
            &[
                Write::Set {
                    key: "counter".into(),
                    value: next.clone(),
                },
                Write::Set {
                    key: format!("log/{}", i % 100),
                    value: value.clone(),
                },
            ],
        )
        .expect("batch");
        if i >= WARM_UP {
            took.push(t.elapsed());
        }
        current = Some(next);
    }
    let elapsed = started.elapsed();
    took.sort_unstable();
    let at = |q: f64| took[((took.len() as f64 * q).ceil() as usize).clamp(1, took.len()) - 1];
    (
        at(0.50),
        at(0.99),
        (WARM_UP + BATCHES) as f64 / elapsed.as_secs_f64(),
    )
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
