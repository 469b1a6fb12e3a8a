//! User sync jobs: a plugin reads its CRM's users in steps (each call stays
//! short under the per-call deadline); the host runs one background job per
//! plugin that loops the steps and keeps the progress, which the portal
//! shows as a progress bar and the CLI as an indicatif bar.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::now_ms;
use crate::runtime::Runtime;

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

/// Sync jobs by plugin id; cheap to clone, all clones share the jobs.
#[derive(Clone, Default)]
pub struct SyncJobs(Arc<Mutex<HashMap<String, SyncJob>>>);

impl SyncJobs {
    /// The progress of `plugin`'s sync (a default job if none ran).
    pub fn get(&self, plugin: &str) -> SyncJob {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(plugin)
            .cloned()
            .unwrap_or_default()
    }

    fn update(&self, plugin: &str, f: impl FnOnce(&mut SyncJob)) {
        let mut jobs = self.0.lock().unwrap_or_else(|p| p.into_inner());
        f(jobs.entry(plugin.to_string()).or_default());
    }

    /// Start a sync of `plugin` in the background unless one runs; either
    /// way, the job as it stands.
    pub fn start(&self, runtime: Arc<Runtime>, plugin: &str) -> SyncJob {
        let started = {
            let mut jobs = self.0.lock().unwrap_or_else(|p| p.into_inner());
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

    /// Loop the plugin's sync steps until it says the sync is complete.
    async fn run(&self, runtime: &Runtime, plugin: &str) {
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
                        self.update(plugin, |job| {
                            job.running = false;
                            job.ok = Some(true);
                            job.finished_at_ms = Some(now_ms());
                        });
                        tracing::info!(%plugin, users = progress.fetched, "user sync complete");
                        return;
                    }
                }
                Err(e) => {
                    let message = e.to_string();
                    tracing::warn!(%plugin, "user sync failed: {message}");
                    self.update(plugin, |job| {
                        job.running = false;
                        job.ok = Some(false);
                        job.error = Some(message);
                        job.finished_at_ms = Some(now_ms());
                    });
                    return;
                }
            }
        }
    }
}
