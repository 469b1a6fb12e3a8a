//! The CRM-neutral pieces of the test emulators (`salesforce-emulator`,
//! `hubspot-emulator`), kept in one place so a fix to the TLS set-up, the
//! accept loop or the fault injection reaches both.
//!
//! What a CRM says (routes, error bodies, headers, charset spellings) stays
//! in each emulator; this crate only moves bytes and certificates.

pub mod cli;
pub mod http;
pub mod server;
pub mod time;
pub mod tls;
