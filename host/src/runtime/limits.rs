//! The limits every plugin call runs under, and the memory limiter that
//! enforces the cap and notes when it refused a growth.

use std::time::Duration;

use wasmtime::{ResourceLimiter, StoreLimits};

use crate::store::Quota;

/// Limits every call runs under.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Wall-clock deadline of one call.
    pub deadline: Duration,
    /// Linear memory cap of one instance, in bytes.
    pub memory: usize,
    /// kv-store quota of one plugin.
    pub kv: Quota,
    /// Serve calls from warm instances (see `runtime::pool`); false gives
    /// every call a fresh store and instance.
    pub reuse_instances: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            deadline: Duration::from_secs(10),
            memory: 64 << 20,
            kv: Quota::default(),
            reuse_instances: true,
        }
    }
}

/// `StoreLimits` plus a note of whether it refused a memory growth, so a
/// failed call can be reported as "memory limit" whatever way the guest
/// died of it (an allocation-failure abort, or a trap).
pub struct MemoryLimiter {
    limits: StoreLimits,
    /// The cap in bytes.
    pub cap: usize,
    /// Whether a growth was refused during this call.
    pub hit: bool,
}

impl MemoryLimiter {
    /// A limiter capping an instance's memory at `cap` bytes.
    pub fn new(cap: usize) -> Self {
        Self {
            limits: wasmtime::StoreLimitsBuilder::new()
                .memory_size(cap)
                .instances(16)
                .tables(64)
                .memories(4)
                .build(),
            cap,
            hit: false,
        }
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.limits.memory_growing(current, desired, maximum)?;
        if !allowed {
            self.hit = true;
        }
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}
