//! What plugins' native unit tests run against, in place of the PBX: a
//! fake host ([`FakeHost`]: an in-memory kv-store with the real one's batch
//! semantics, a controllable clock, recorders for the other host calls, an
//! HTTP side scripted with a handler), and shared test data. Behind the
//! feature `testing` (a plugin's dev-dependency turns it on).

mod fake_host;

pub use fake_host::*;

/// One US number in the ways people and PBXs write it; each normalizes to
/// +14155550100.
pub const US_NUMBER_FORMATS: [&str; 6] = [
    "(415) 555-0100",
    "+1 415-555-0100",
    "415.555.0100",
    "4155550100",
    "+14155550100",
    "1 (415) 555 0100",
];
