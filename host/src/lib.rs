//! The reference PBX host: it runs CRM plugins (WebAssembly components) in a
//! sandbox and gives them only the capabilities of the `pbx:crm` contract.
//!
//! - `runtime`: the wasmtime engine, plugin install and load, limits, calls.
//! - `capabilities`: one file per host interface the plugins import.
//! - `store`: the encrypted redb store (plugin kv namespaces, host records).
//! - `outbound`: the allow-listed HTTP client behind `http-fetch`.
//! - `server`: portal, admin API and OAuth callback; `client`: the CLI side.

pub mod capabilities;
pub mod client;
pub mod config;
pub mod outbound;
pub mod runtime;
pub mod server;
pub mod store;
