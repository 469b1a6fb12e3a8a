//! The redb backend's group-commit writer thread: it takes whatever batches
//! are waiting, checks and applies each in one write transaction, commits
//! once, then answers them all. Concurrent batches share one commit and one
//! disk flush, and no async worker ever waits for the disk or for the
//! database's single writer.

use std::collections::HashMap;
use std::sync::{Arc, mpsc};

use redb::{Database, ReadableTable, TableDefinition};

use super::backend::{Reply, SealedBatch, SealedWrite};
use super::layout::{KvTable, USAGE, kv_table_name};
use super::seal::{SEAL_OVERHEAD, Sealer};
use super::types::KvError;

/// Most batches one group commit takes, and roughly most bytes: a bound on
/// how long the batches behind a group wait.
const MAX_GROUP: usize = 256;
const MAX_GROUP_BYTES: usize = 32 * 1024 * 1024;

/// One batch in the writer's queue, with where its outcome goes.
pub(super) struct Job {
    pub(super) batch: SealedBatch,
    pub(super) reply: Reply,
}

/// Why a job in a group failed: refused on its own (nothing of it was
/// written), or a database failure that aborts the whole group.
enum JobError {
    Refused(KvError),
    Fatal(String),
}

fn fatal(error: impl Into<redb::Error>) -> JobError {
    let error = error.into();
    tracing::error!(%error, "store write failed");
    JobError::Fatal(format!("database error: {error}"))
}

/// The writer thread: takes every job waiting, applies each in one write
/// transaction, commits once, then answers them all.
pub(super) fn run_writer(db: Arc<Database>, sealer: Sealer, jobs: mpsc::Receiver<Job>) {
    while let Ok(first) = jobs.recv() {
        let mut bytes = first.size();
        let mut group = vec![first];
        while group.len() < MAX_GROUP && bytes < MAX_GROUP_BYTES {
            match jobs.try_recv() {
                Ok(job) => {
                    bytes += job.size();
                    group.push(job);
                }
                Err(_) => break,
            }
        }
        commit_group(&db, &sealer, group);
    }
}

/// Applies a group of jobs in one write transaction and answers each: a
/// refused job gets its own error, the others share the commit's outcome.
pub(super) fn commit_group(db: &Database, sealer: &Sealer, group: Vec<Job>) {
    let txn = match db.begin_write() {
        Ok(txn) => txn,
        Err(e) => {
            let JobError::Fatal(message) = fatal(e) else {
                return;
            };
            for job in group {
                job.reply.send(Err(KvError::Unavailable(message.clone())));
            }
            return;
        }
    };
    let mut outcomes = Vec::with_capacity(group.len());
    let mut failure = None;
    for job in &group {
        match apply_job(&txn, sealer, &job.batch) {
            Ok(()) => outcomes.push(Ok(())),
            Err(JobError::Refused(e)) => outcomes.push(Err(e)),
            Err(JobError::Fatal(message)) => {
                failure = Some(message);
                break;
            }
        }
    }
    // Dropping `txn` uncommitted aborts it: nothing of the group is written.
    let committed = match failure {
        Some(message) => Err(message),
        None => txn.commit().map_err(|e| match fatal(e) {
            JobError::Fatal(message) => message,
            JobError::Refused(e) => e.to_string(),
        }),
    };
    let mut outcomes = outcomes.into_iter();
    for job in group {
        let outcome = outcomes.next();
        let result = match (&committed, outcome) {
            (Ok(()), Some(outcome)) => outcome,
            // Refused on its own: that is its answer either way.
            (_, Some(Err(refused))) => Err(refused),
            (Err(_), _) | (Ok(()), None) => {
                Err(KvError::Unavailable(message_or(committed.as_ref().err())))
            }
        };
        job.reply.send(result);
    }
}

fn message_or(message: Option<&String>) -> String {
    message
        .cloned()
        .unwrap_or_else(|| "the store's writer stopped".into())
}

/// Checks and applies one job inside the group's transaction. Everything
/// that can refuse the job (preconditions, quota, an injected failure) is
/// decided before its first write, so a refused job leaves no trace.
fn apply_job(
    txn: &redb::WriteTransaction,
    sealer: &Sealer,
    job: &SealedBatch,
) -> Result<(), JobError> {
    let table_name = kv_table_name(&job.namespace);
    let def: KvTable<'_> = TableDefinition::new(&table_name);
    let mut table = txn.open_table(def).map_err(fatal)?;
    for precondition in &job.preconditions {
        let current = match table.get(precondition.key.as_str()).map_err(fatal)? {
            None => None,
            Some(guard) => Some(
                sealer
                    .open_value(&job.namespace, &precondition.key, guard.value())
                    .map_err(JobError::Refused)?,
            ),
        };
        if current != precondition.expected {
            return Err(JobError::Refused(KvError::Conflict(
                precondition.key.clone(),
            )));
        }
    }

    let mut usage_table = txn.open_table(USAGE).map_err(fatal)?;
    let before = usage_table
        .get(&*job.namespace)
        .map_err(fatal)?
        .map_or((0, 0), |guard| guard.value());
    let (mut keys, mut bytes) = before;
    // Plaintext length of each key as the writes before it leave it.
    let mut lengths: HashMap<&str, Option<usize>> = HashMap::new();
    let refused_corrupt = |what: &str| JobError::Refused(corrupt(&job.namespace, what));
    for write in &job.writes {
        let key = write.key();
        let old = match lengths.get(key) {
            Some(len) => *len,
            None => match table.get(key).map_err(fatal)? {
                None => None,
                Some(guard) => Some(
                    guard
                        .value()
                        .len()
                        .checked_sub(SEAL_OVERHEAD)
                        .ok_or_else(|| refused_corrupt("a stored value is truncated"))?,
                ),
            },
        };
        if let Some(old) = old {
            keys = keys
                .checked_sub(1)
                .ok_or_else(|| refused_corrupt("its key count is too low"))?;
            bytes = bytes
                .checked_sub((key.len() + old) as u64)
                .ok_or_else(|| refused_corrupt("its byte count is too low"))?;
        }
        let new = match write {
            SealedWrite::Set { plain_len, .. } => {
                keys = keys.saturating_add(1);
                bytes = bytes.saturating_add((key.len() + plain_len) as u64);
                Some(*plain_len)
            }
            SealedWrite::Delete { .. } => None,
        };
        lengths.insert(key, new);
    }
    if let Some(injected) = job.injected_failure() {
        return Err(JobError::Refused(injected));
    }
    // A batch that does not grow a dimension is always allowed, so a
    // namespace over a since-lowered quota can still shrink.
    if keys > job.quota.max_keys && keys > before.0 {
        return Err(JobError::Refused(KvError::QuotaExceeded(format!(
            "{} keys",
            job.quota.max_keys
        ))));
    }
    if bytes > job.quota.max_bytes && bytes > before.1 {
        return Err(JobError::Refused(KvError::QuotaExceeded(format!(
            "{} bytes",
            job.quota.max_bytes
        ))));
    }

    for write in &job.writes {
        match write {
            SealedWrite::Set { key, sealed, .. } => {
                table
                    .insert(key.as_str(), sealed.as_slice())
                    .map_err(fatal)?;
            }
            SealedWrite::Delete { key } => {
                table.remove(key.as_str()).map_err(fatal)?;
            }
        }
    }
    if keys == 0 {
        usage_table.remove(&*job.namespace).map_err(fatal)?;
    } else {
        usage_table
            .insert(&*job.namespace, (keys, bytes))
            .map_err(fatal)?;
    }
    Ok(())
}

impl Job {
    /// Roughly the bytes this job adds to a group.
    fn size(&self) -> usize {
        self.batch
            .writes
            .iter()
            .map(|w| match w {
                SealedWrite::Set { key, sealed, .. } => key.len() + sealed.len(),
                SealedWrite::Delete { key } => key.len(),
            })
            .sum()
    }
}

fn corrupt(namespace: &str, what: &str) -> KvError {
    tracing::error!(namespace, "usage record inconsistent: {what}");
    KvError::Unavailable(format!(
        "usage record of namespace {namespace:?} is inconsistent: {what}"
    ))
}
