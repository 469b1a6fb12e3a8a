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
//! - [`record`]: records updated by compare-and-swap in bounded rounds,
//!   and versioned records that count their changes.
//! - [`outbox`]: an exactly-once outbox: one entry per id, a done
//!   ledger, a lease per delivery, retries with back-off; the CRM
//!   implements [`outbox::Deliver`].
//! - [`lease`]: leases in the kv-store, so one instance of many does a
//!   piece of work (a delivery, a token refresh) at a time.
//! - [`pkce`]: OAuth 2.0 with PKCE: random tokens, verifiers, challenges,
//!   plausible `state`s.
//! - [`associations`]: CRM users paired with extensions: the users page,
//!   the proposal, the versioned save and the lookups, for any CRM.
//! - [`oauth`]: an OAuth 2.0 authorization-code client: the consent URL
//!   (PKCE optional), the code and refresh grants, the answer with a CRM's
//!   extra fields, and failures classified (revoked, misconfigured,
//!   refused, transient).
//! - [`session`]: single-flight token refresh under a kv lease with
//!   fencing, after a rejection or by the tokens' stored expiry.
//! - [`http`]: request helpers (form posts, bearer GETs) and outside text
//!   made fit for one line of a message.
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
pub mod http;
pub mod lease;
pub mod matching;
pub mod oauth;
pub mod outbox;
pub mod phone;
pub mod pkce;
pub mod record;
pub mod session;
pub mod store;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
#[cfg(all(target_family = "wasm", feature = "component"))]
pub mod wit_host;
