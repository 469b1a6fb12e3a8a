//! Outbound HTTP(S) for plugins ("http-fetch"): the allow-list policy and
//! the real client.
//!
//! A plugin never opens sockets itself; every request goes through
//! [`Client::fetch`], which enforces, for every hop of a redirect chain:
//!
//! * the allow-list: the target must match a pattern the plugin's manifest
//!   *requested* and a pattern the operator *granted* ([`Policy`]);
//! * the address rules: loopback, private, link-local and other internal
//!   addresses ([`is_forbidden_ip`]) are reachable only when the operator
//!   granted that exact host, whether the URL names the address literally or
//!   a host name resolves to it;
//! * size and time caps ([`Limits`]).
//!
//! Nothing here ever logs or returns header values or bodies: they carry the
//! plugins' OAuth tokens.
//!
//! What each file answers:
//!
//! * `pattern`: what does a grant or manifest entry name ([`HostPattern`])?
//! * `policy`: may this plugin reach this URL at all ([`Policy`])?
//! * `guard`: may this connection go to this address ([`is_forbidden_ip`])?
//! * `client`: how is the request sent, redirected, capped ([`Client`])?
//! * `types`, `errors`: what a plugin sends and gets back, and why it failed.

mod client;
mod errors;
mod guard;
mod pattern;
mod policy;
mod types;

#[cfg(test)]
mod tests;

pub use client::{Client, ClientConfig, Limits};
pub use errors::{ClientError, FetchError};
pub use guard::is_forbidden_ip;
pub use pattern::{HostPattern, PatternError};
pub use policy::Policy;
pub use types::{Method, Request, Response};
