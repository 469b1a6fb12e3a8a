//! How the redb backend lays a store out in its file: one table per
//! namespace, a `usage` table kept in step with them, and a `meta` table.
//! Shared by the backend's reads and its writer thread.

use redb::TableDefinition;

/// A namespace's rows: key -> sealed value.
pub(super) type KvTable<'a> = TableDefinition<'a, &'static str, &'static [u8]>;

/// Prefix of the per-namespace data tables. The other tables (`usage`,
/// `meta`) do not start with it, so no namespace name can collide with them.
const KV_TABLE_PREFIX: &str = "kv/";

/// Name of the table holding `namespace`'s rows. Each namespace having its
/// own table makes isolation structural: no key string, however crafted,
/// can address a row of another namespace.
pub(super) fn kv_table_name(namespace: &str) -> String {
    format!("{KV_TABLE_PREFIX}{namespace}")
}

/// Namespace name -> (keys, bytes) as reported by
/// [`Namespace::usage`](super::Namespace::usage).
pub(super) const USAGE: TableDefinition<&str, (u64, u64)> = TableDefinition::new("usage");
/// Host bookkeeping about the store itself.
pub(super) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// `META` entry holding the key-check value (see `seal`).
pub(super) const KEY_CHECK: &str = "key-check";
