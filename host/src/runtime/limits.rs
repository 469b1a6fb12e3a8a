//! The limits every plugin call runs under, and the memory limiter that
//! enforces the cap on an instance's memories and tables together and
//! notes when it refused a growth.

use std::time::Duration;

use wasmtime::{ResourceLimiter, StoreLimits};

use crate::store::Quota;

/// Limits every call runs under.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Wall-clock deadline of one call.
    pub deadline: Duration,
    /// Memory cap of one instance (all its linear memories and tables
    /// together), in bytes.
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

/// Bytes charged per table element: a table of function references costs
/// the host a pointer per element, and a table grown without bound would
/// otherwise escape the cap.
pub const TABLE_ELEMENT_BYTES: usize = 8;

/// A limiter counting every memory and table of a store's instance
/// together against one cap: a component is several core instances, each
/// may have memories and tables, and a cap per linear memory would let a
/// plugin use the cap once per memory. It also notes when it refused a
/// growth, so a failed call can be reported as "memory limit" whatever way
/// the guest died of it (an allocation-failure abort, or a trap).
pub struct MemoryLimiter {
    /// Counts of instances, tables and memories (not their sizes).
    limits: StoreLimits,
    /// The cap in bytes, for memories and tables together.
    pub cap: usize,
    /// Bytes in use: every memory's size and every table's elements. A
    /// growth the engine fails after this limiter allowed it stays counted
    /// (the engine's failure notice does not say which growth failed, and
    /// counting too much is the safe side); growths past a memory's or
    /// table's own maximum, which always fail, are refused here uncounted.
    used: usize,
    /// Whether a growth was refused during this call.
    pub hit: bool,
}

impl MemoryLimiter {
    /// A limiter capping an instance's memories and tables at `cap` bytes
    /// in all.
    pub fn new(cap: usize) -> Self {
        Self {
            limits: wasmtime::StoreLimitsBuilder::new()
                .instances(16)
                .tables(64)
                .memories(4)
                .build(),
            cap,
            used: 0,
            hit: false,
        }
    }

    /// Bytes the instance's memories and tables use.
    pub fn used(&self) -> usize {
        self.used
    }

    /// Allows growing by `delta` bytes if the total stays within the cap
    /// and the memory or table's own maximum allows it (`within_own`).
    fn grow(&mut self, delta: usize, within_own: bool) -> bool {
        match self.used.checked_add(delta) {
            Some(total) if total <= self.cap => {
                if within_own {
                    self.used = total;
                }
                within_own
            }
            _ => {
                self.hit = true;
                false
            }
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
        // Called for a memory's first allocation too (current 0), so every
        // memory of the instance is in `used`.
        let within_own = maximum.is_none_or(|max| desired <= max);
        Ok(self.grow(desired.saturating_sub(current), within_own))
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let within_own = maximum.is_none_or(|max| desired <= max)
            && self.limits.table_growing(current, desired, maximum)?;
        let elements = desired.saturating_sub(current);
        Ok(self.grow(elements.saturating_mul(TABLE_ELEMENT_BYTES), within_own))
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

#[cfg(test)]
mod tests {
    use wasm_encoder::{
        AbstractHeapType, CodeSection, ExportKind, ExportSection, Function, FunctionSection,
        HeapType, MemorySection, MemoryType, Module, RefType, TableSection, TableType, TypeSection,
        ValType,
    };
    use wasmtime::{Engine, Instance, Store};

    use super::*;

    const PAGE: usize = 64 << 10;

    /// A core module with two memories and a table, all empty, and one
    /// export per growth: `grow-a`, `grow-b` (pages) and `grow-table`
    /// (elements), each answering the old size or -1.
    fn two_memories_and_a_table() -> Vec<u8> {
        let mut types = TypeSection::new();
        types.ty().function([ValType::I32], [ValType::I32]);
        let mut functions = FunctionSection::new();
        let mut tables = TableSection::new();
        tables.table(TableType {
            element_type: RefType::FUNCREF,
            table64: false,
            minimum: 0,
            maximum: None,
            shared: false,
        });
        let mut memories = MemorySection::new();
        let mut exports = ExportSection::new();
        let mut code = CodeSection::new();
        for (index, name) in ["grow-a", "grow-b"].into_iter().enumerate() {
            memories.memory(MemoryType {
                minimum: 0,
                maximum: None,
                memory64: false,
                shared: false,
                page_size_log2: None,
            });
            functions.function(0);
            exports.export(name, ExportKind::Func, index as u32);
            let mut body = Function::new([]);
            body.instructions()
                .local_get(0)
                .memory_grow(index as u32)
                .end();
            code.function(&body);
        }
        functions.function(0);
        exports.export("grow-table", ExportKind::Func, 2);
        let mut body = Function::new([]);
        body.instructions()
            .ref_null(HeapType::Abstract {
                shared: false,
                ty: AbstractHeapType::Func,
            })
            .local_get(0)
            .table_grow(0)
            .end();
        code.function(&body);
        let mut module = Module::new();
        module
            .section(&types)
            .section(&functions)
            .section(&tables)
            .section(&memories)
            .section(&exports)
            .section(&code);
        module.finish()
    }

    fn instance(cap: usize) -> (Store<MemoryLimiter>, Instance) {
        let engine = Engine::default();
        let module = wasmtime::Module::new(&engine, two_memories_and_a_table()).expect("module");
        let mut store = Store::new(&engine, MemoryLimiter::new(cap));
        store.limiter(|l| l);
        let instance = Instance::new(&mut store, &module, &[]).expect("instance");
        (store, instance)
    }

    fn grow(store: &mut Store<MemoryLimiter>, instance: &Instance, export: &str, n: i32) -> i32 {
        instance
            .get_typed_func::<i32, i32>(&mut *store, export)
            .expect("export")
            .call(&mut *store, n)
            .expect("grow runs")
    }

    #[test]
    fn the_cap_counts_every_memory_of_the_instance_together() {
        let cap = 64 * PAGE;
        let (mut store, instance) = instance(cap);
        assert_eq!(grow(&mut store, &instance, "grow-a", 40), 0);
        assert!(!store.data().hit);
        // 40 + 40 pages is past the 64-page cap, though each memory alone
        // is under it.
        assert_eq!(grow(&mut store, &instance, "grow-b", 40), -1);
        assert!(store.data().hit, "the refusal is noted as the memory limit");
        // What is left still fits.
        assert_eq!(grow(&mut store, &instance, "grow-b", 24), 0);
        assert_eq!(store.data().used(), cap);
        assert_eq!(grow(&mut store, &instance, "grow-a", 1), -1);
    }

    #[test]
    fn tables_count_against_the_same_cap() {
        let cap = 64 * PAGE;
        let (mut store, instance) = instance(cap);
        assert_eq!(grow(&mut store, &instance, "grow-a", 60), 0);
        // Four pages are left: a table of more elements than fit in them
        // is refused.
        let elements = (4 * PAGE / TABLE_ELEMENT_BYTES) as i32 + 1;
        assert_eq!(grow(&mut store, &instance, "grow-table", elements), -1);
        assert!(store.data().hit);
        assert_eq!(grow(&mut store, &instance, "grow-table", elements - 1), 0);
        assert_eq!(grow(&mut store, &instance, "grow-a", 1), -1);
    }
}
