//! The HubSpot plugin: a wasm32-wasip2 component of `pbx:crm@0.5.0` whose
//! logic also compiles natively and is unit-tested against the SDK's fake
//! host with a fake HubSpot behind its HTTP side (`testing`).
//!
//! The component's glue is in `component`; each export is a method of
//! [`plugin::Plugin`], which hands it to the part that does it:
//! `settings`, `connection` (OAuth install, tokens, status), `api` (HTTP
//! to HubSpot, its errors and rate limits), `users` (owners sync),
//! `associations`, `calls` (lookup, pop-up, journal, unknown callers,
//! click-to-call) and `sign_in`.

pub use pbx_crm_sdk::{bindings, error, host, lease, matching, phone};

pub mod api;
pub mod associations;
pub mod calls;
#[cfg(all(target_family = "wasm", feature = "component"))]
mod component;
pub mod connection;
pub mod keys;
pub mod plugin;
pub mod settings;
pub mod sign_in;
#[cfg(test)]
mod testing;
#[cfg(test)]
mod tests;
pub mod users;

/// The first `max` characters of `text` (messages quote outside data
/// bounded).
pub(crate) fn cut(text: &str, max: usize) -> String {
    let mut out: String = text.chars().take(max).collect();
    if text.chars().count() > max {
        out.push('…');
    }
    out
}
