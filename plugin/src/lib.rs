//! The Salesforce plugin: a wasm32-wasip2 component whose logic also compiles
//! natively and is unit-tested against a fake host (see `testing`).
//!
//! This file only declares the modules: the WIT bindings live in `bindings`,
//! the component's export glue in `component`.

pub mod associations;
pub mod auth;
pub mod bindings;
pub mod calls;
#[cfg(all(target_family = "wasm", feature = "component"))]
mod component;
pub mod connection;
pub mod error;
pub mod host;
pub mod http;
pub mod lease;
pub mod matching;
pub mod oauth;
pub mod phone;
pub mod plugin;
pub mod salesforce;
pub mod settings;
pub mod sign_in;
pub mod store;
#[cfg(test)]
mod testing;
pub mod time;
pub mod users;
