//! Data for plugins' unit tests.

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
