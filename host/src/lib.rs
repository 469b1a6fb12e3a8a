//! The reference PBX host: it runs CRM plugins (WebAssembly components) in a
//! sandbox and gives them only the capabilities of the `pbx:crm` contract.
//!
//! - `runtime`: the wasmtime engine, plugin versions, calls through a typed
//!   handle, and the served contract versions (`runtime::wit`).
//! - `capabilities`: what plugins may use, one file per host interface.
//! - `store`: the encrypted key-value store behind a storage trait
//!   (embedded redb by default); `outbound`: the allow-listed HTTP client.
//! - The PBX's own services: `directory` (extensions), `call_input` (what
//!   the PBX sends about calls, checked), `journal` (call events to the
//!   plugins, kept until delivered), `user_sync` (sync jobs), `dialing`
//!   (click-to-call).
//! - `server`: portal, agent pages, admin API and OAuth callback.
//! - `network`: the PBX's Homepage URL, from which Callback URLs are
//!   composed.
//! - `tenants`: the other PBXs one host serves (the operator's records).
//! - `cli`: the `pbx-host` commands; `config`: `serve`'s settings;
//!   `files`: writing files safely.

pub mod call_input;
pub mod capabilities;
pub mod cli;
pub mod config;
pub mod dialing;
pub mod directory;
pub mod dispositions;
pub mod files;
pub mod fleet;
pub mod journal;
pub mod network;
pub mod outbound;
pub mod recent_calls;
pub mod runtime;
pub mod server;
pub mod store;
pub mod tenants;
pub mod user_sync;

/// Milliseconds since the Unix epoch, the host's one clock for records.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
