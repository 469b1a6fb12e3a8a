//! User sync jobs: a plugin reads its CRM's users in steps (each call stays
//! short under the per-call deadline); the host runs one background job per
//! plugin that loops the steps and keeps the progress, which the portal
//! shows as a progress bar and the CLI as an indicatif bar.
//!
//! A sync started for the portal's result pop-up (`show_result`) leaves its
//! end in the store (`host/sync-results`, one per plugin) until the
//! administrator dismisses it, so the pop-up survives a restart.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::now_ms;
use crate::runtime::Runtime;
use crate::store::{KvError, Namespace};

/// The store namespace of the results waiting for the administrator.
pub const RESULT_NAMESPACE: &str = "host/sync-results";

/// The progress of a plugin's user sync.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SyncJob {
    /// Whether it is running now.
    pub running: bool,
    /// Users read so far.
    pub fetched: u32,
    /// Users in the CRM.
    pub total: u32,
    /// When it started, ms since the epoch.
    pub started_at_ms: u64,
    /// When it ended.
    pub finished_at_ms: Option<u64>,
    /// Whether it ended well.
    pub ok: Option<bool>,
    /// Why it failed.
    pub error: Option<String>,
}

/// How a sync started for the result pop-up ended, kept until the
/// administrator dismisses it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SyncResult {
    /// Whether it ended well.
    pub ok: bool,
    /// Users read.
    pub fetched: u32,
    /// Users in the CRM.
    pub total: u32,
    /// Why it failed.
    pub error: Option<String>,
    /// When it ended, ms since the epoch.
    pub finished_at_ms: u64,
}

/// Sync jobs by plugin id, and the results kept for the pop-up; cheap to
/// clone, all clones share them.
#[derive(Clone)]
pub struct SyncJobs {
    jobs: Arc<Mutex<HashMap<String, SyncJob>>>,
    /// Which running jobs keep their result for the pop-up.
    show_result: Arc<Mutex<HashMap<String, bool>>>,
    results: Namespace,
}

impl SyncJobs {
    /// Jobs keeping their results for the pop-up in `results`.
    pub fn new(results: Namespace) -> SyncJobs {
        SyncJobs {
            jobs: Arc::default(),
            show_result: Arc::default(),
            results,
        }
    }

    /// The result of `plugin`'s last sync started with `show_result`, until
    /// it is dismissed.
    pub fn result(&self, plugin: &str) -> Result<Option<SyncResult>, KvError> {
        Ok(self
            .results
            .get(plugin)?
            .and_then(|bytes| serde_json::from_slice(&bytes).ok()))
    }

    /// Forget `plugin`'s result (the administrator has read it).
    pub async fn dismiss(&self, plugin: &str) -> Result<(), KvError> {
        self.results.delete_async(plugin.to_string()).await
    }

    /// The progress of `plugin`'s sync (a default job if none ran).
    pub fn get(&self, plugin: &str) -> SyncJob {
        self.jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(plugin)
            .cloned()
            .unwrap_or_default()
    }

    fn update(&self, plugin: &str, f: impl FnOnce(&mut SyncJob)) {
        let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        f(jobs.entry(plugin.to_string()).or_default());
    }

    /// Start a sync of `plugin` in the background unless one runs; either
    /// way, the job as it stands. With `show_result`, its end is kept for
    /// the pop-up (also when it joins a running job).
    pub fn start(&self, runtime: Arc<Runtime>, plugin: &str, show_result: bool) -> SyncJob {
        if show_result {
            self.show_result
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(plugin.to_string(), true);
        }
        let started = {
            let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
            let job = jobs.entry(plugin.to_string()).or_default();
            if job.running {
                false
            } else {
                *job = SyncJob {
                    running: true,
                    started_at_ms: now_ms(),
                    ..SyncJob::default()
                };
                true
            }
        };
        if started {
            let (jobs, id) = (self.clone(), plugin.to_string());
            tokio::spawn(async move { jobs.run(&runtime, &id).await });
        }
        self.get(plugin)
    }

    /// Loop the plugin's sync steps until it says the sync is complete;
    /// keep the result if it was asked for, before the job reads as ended
    /// (whoever sees it end finds the result).
    async fn run(&self, runtime: &Runtime, plugin: &str) {
        let outcome = self.steps(runtime, plugin).await;
        let finished_at_ms = now_ms();
        let wanted = self
            .show_result
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(plugin)
            .unwrap_or(false);
        if wanted {
            let job = self.get(plugin);
            let result = SyncResult {
                ok: outcome.is_ok(),
                fetched: job.fetched,
                total: job.total,
                error: outcome.as_ref().err().cloned(),
                finished_at_ms,
            };
            let kept = match serde_json::to_vec(&result) {
                Ok(bytes) => self
                    .results
                    .set_async(plugin.to_string(), bytes)
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            if let Err(e) = kept {
                tracing::warn!(%plugin, "the user sync's result cannot be kept for the portal: {e}");
            }
        }
        self.update(plugin, |job| {
            job.running = false;
            job.ok = Some(outcome.is_ok());
            job.error = outcome.err();
            job.finished_at_ms = Some(finished_at_ms);
        });
    }

    /// The plugin's sync steps, the progress kept as they go; why it
    /// failed.
    async fn steps(&self, runtime: &Runtime, plugin: &str) -> Result<(), String> {
        let mut cursor: Option<String> = None;
        loop {
            let (step, timing) = runtime
                .plugin(plugin)
                .sync_users(cursor.as_deref())
                .timed()
                .await;
            // Where a step's time goes (the CRM, or the host and plugin), for
            // tuning the step size: RUST_LOG=pbx_host::user_sync=debug.
            tracing::debug!(
                %plugin,
                total_ms = timing.total.as_secs_f64() * 1e3,
                http_ms = timing.http.as_secs_f64() * 1e3,
                fetches = timing.http_fetches,
                "user sync step"
            );
            match step {
                Ok(progress) => {
                    self.update(plugin, |job| {
                        job.fetched = progress.fetched;
                        job.total = progress.total;
                    });
                    cursor = progress.cursor;
                    if cursor.is_none() {
                        tracing::info!(%plugin, users = progress.fetched, "user sync complete");
                        return Ok(());
                    }
                }
                Err(e) => {
                    let message = e.to_string();
                    tracing::warn!(%plugin, "user sync failed: {message}");
                    return Err(message);
                }
            }
        }
    }
}
