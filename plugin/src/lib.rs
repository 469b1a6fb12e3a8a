//! The Salesforce plugin: a wasm32-wasip2 component whose logic also compiles
//! natively and is unit-tested against a fake host (see `testing`).
//!
//! This file only declares the modules: the component's export glue is in
//! `component`. What every CRM plugin needs (the WIT bindings, the host
//! trait, errors, leases, versioned records, e-mail matching, phone numbers)
//! comes from the plugin SDK, `pbx-crm-sdk`,
//! re-exported here under the paths the rest of the plugin uses.

pub use pbx_crm_sdk::{bindings, error, host, lease, matching, phone, record};

pub mod associations;
pub mod auth;
pub mod calls;
#[cfg(all(target_family = "wasm", feature = "component"))]
mod component;
pub mod connection;
pub mod http;
pub mod oauth;
pub mod plugin;
pub mod salesforce;
pub mod settings;
pub mod sign_in;
pub mod store;
#[cfg(test)]
mod testing;
pub mod time;
pub mod users;
