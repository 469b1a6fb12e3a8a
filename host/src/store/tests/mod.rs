//! Tests of the whole store through [`Store`] and [`Namespace`], by area;
//! the helpers here open a store in a temporary data directory.

mod files;
mod namespace;
mod redis;
mod writer;

use std::sync::Arc;

use redb::Database;

use super::embedded::RedbBackend;
use super::seal::Sealer;
use super::{RedisTarget, Store, Write};

fn open_temp() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open store");
    (dir, store)
}

/// [`open_temp`], also keeping the redb database and the sealer, to tamper
/// with the file or to drive the writer directly.
fn open_temp_raw() -> (tempfile::TempDir, Store, Arc<Database>, Sealer) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (backend, sealer) = RedbBackend::open(dir.path()).expect("open store");
    let db = backend.database();
    let store = Store::with_backend(backend, sealer.clone());
    (dir, store, db, sealer)
}

/// A store on its own Redis server (started here, stopped with the guard).
fn open_redis() -> (impl Sized, Store) {
    let server = redis_kit::RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let target = RedisTarget::parse(&server.url()).expect("url");
    let store = Store::open_redis(&target, dir.path()).expect("open the Redis store");
    ((server, dir), store)
}

/// A store on its own three-master Redis Cluster.
fn open_redis_cluster() -> (impl Sized, Store) {
    let cluster = redis_kit::RedisCluster::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let target = RedisTarget::parse(&cluster.url()).expect("url");
    let store = Store::open_redis(&target, dir.path()).expect("open the Redis Cluster store");
    ((cluster, dir), store)
}

/// Tests of the backends' contract: each listed `fn(&Store)` becomes a
/// test per backend, `redb::NAME`, `redis::NAME` and `redis_cluster::NAME`.
macro_rules! backends {
    (redb_and_redis: [$($both:ident),* $(,)?], cluster: [$($cluster:ident),* $(,)?] $(,)?) => {
        mod redb {
            $(#[test]
            fn $both() {
                let (_guard, store) = super::super::open_temp();
                super::$both(&store);
            })*
        }
        mod redis {
            $(#[test]
            fn $both() {
                let (_guard, store) = super::super::open_redis();
                super::$both(&store);
            })*
        }
        mod redis_cluster {
            $(#[test]
            fn $cluster() {
                let (_guard, store) = super::super::open_redis_cluster();
                super::$cluster(&store);
            })*
        }
    };
}
use backends;

fn set(key: &str, value: &[u8]) -> Write {
    Write::Set {
        key: key.into(),
        value: value.to_vec(),
    }
}

fn del(key: &str) -> Write {
    Write::Delete { key: key.into() }
}
