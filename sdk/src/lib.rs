//! The plugin SDK: what every CRM plugin for the PBX needs, whatever its
//! CRM. A plugin is a `wasm32-wasip2` component of the `pbx:crm` contract;
//! its logic compiles natively too and is unit-tested against a fake host.
//!
//! - [`bindings`]: the contract's types and imports, and the `export!`
//!   macro a plugin exports its implementation with.
//! - [`host`]: every host call behind the [`host::Host`] trait, so the
//!   logic runs against a fake host in native tests.
//! - [`store`]: typed values over the kv-store, and batches that commit
//!   atomically after their preconditions hold.
//! - [`lease`]: leases in the kv-store, so one instance of many does a
//!   piece of work (a delivery, a token refresh) at a time.
//! - [`pkce`]: OAuth 2.0 with PKCE: random tokens, verifiers, challenges,
//!   plausible `state`s.
//! - [`associations`]: CRM users paired with extensions: the users page,
//!   the proposal, the versioned save and the lookups, for any CRM.
//! - [`matching`]: CRM users paired with extensions by e-mail address, as
//!   the administrator's "Associate Automatically" proposes them.
//! - [`error`]: [`error::PluginError`], which maps onto the contract's
//!   error kinds and says what to fix.
//! - [`phone`]: phone numbers to E.164 from anything people and PBXs
//!   write, with the metadata as static data (no parsed database in a
//!   plugin's memory image).
//! - [`testing`]: data for plugins' tests.

pub mod associations;
pub mod bindings;
pub mod error;
pub mod host;
pub mod lease;
pub mod matching;
pub mod phone;
pub mod pkce;
pub mod store;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
