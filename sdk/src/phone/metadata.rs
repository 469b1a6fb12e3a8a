//! The phone-number metadata [`super::normalize`] reads numbers with:
//! libphonenumber's territories as static data built at compile time
//! (`build.rs`), turned into `phonenumber` databases lazily, per instance,
//! holding only the calling codes a number needs.
//!
//! Building the whole database costs ~100 ms natively (mostly checking the
//! syntax of ~7,500 regular expressions) and 1.9 MB of heap; snapshotting
//! it made the shipped plugin 15 MB. A number only ever needs its default
//! region's code and its own:
//!
//! - The parser finds an international number's code by trying the 1- to
//!   3-digit prefixes of its digits (after a `+` or the default region's
//!   international prefix) against the database's codes. Calling codes are
//!   prefix-free (`build.rs` checks it), so at most one of those prefixes is
//!   a code at all; a database without it answers `InvalidCountryCode`.
//! - Everything else it looks up (the default region, the territories of
//!   the number's code for validation and formatting) is in those two
//!   groups; nothing walks the whole database.
//!
//! So a database of the default region's code answers a number as the whole
//! database does unless it says `InvalidCountryCode`; then the codes found
//! anywhere in the digits are tried, each with the default region beside
//! it, and the first that does not say `InvalidCountryCode` is the answer
//! (only the number's own code can). Every database built is kept for the
//! instance's later calls, so a code costs once per instance: ~0.3 ms for
//! most, ~7 ms natively for +1 (25 territories).

use std::cell::RefCell;
use std::collections::BTreeMap;

use phonenumber::metadata::{Database, loader};

/// One territory of the static data.
struct Territory {
    /// ISO 3166 alpha-2, or "001" for the non-geographic codes.
    id: &'static str,
    code: u16,
    /// Its postcard-encoded `loader::Metadata` in [`METADATA`].
    start: usize,
    end: usize,
}

include!(concat!(env!("OUT_DIR"), "/phone_metadata.rs"));

static METADATA: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/phone_metadata.bin"));

/// The territories of a calling code, its main territory first.
fn group(code: u16) -> &'static [Territory] {
    let start = TERRITORIES.partition_point(|t| t.code < code);
    let end = TERRITORIES.partition_point(|t| t.code <= code);
    &TERRITORIES[start..end]
}

/// The territory a default region names, if it has metadata.
fn territory(region: &str) -> Option<&'static Territory> {
    TERRITORIES.iter().find(|t| t.id == region)
}

/// Whether `code` is a calling code.
pub(super) fn is_code(code: u16) -> bool {
    !group(code).is_empty()
}

/// The calling codes that start anywhere in `digits` (ASCII digits), in the
/// order they start, each once. The number's own code, if it has one, is
/// among them: it starts after the `+` or the international prefix.
pub(super) fn codes_in(digits: &[u8]) -> Vec<u16> {
    let mut codes = Vec::new();
    for start in 0..digits.len() {
        if digits[start] == b'0' {
            continue;
        }
        let mut code = 0u16;
        for &d in digits[start..].iter().take(3) {
            code = code * 10 + u16::from(d - b'0');
            if is_code(code) && !codes.contains(&code) {
                codes.push(code);
            }
        }
    }
    codes
}

/// A database of `territories`; the texts say what failed, which only a
/// broken build can make happen (the unit tests build every territory).
fn build<'a>(territories: impl IntoIterator<Item = &'a Territory>) -> Result<Database, String> {
    let mut metadata = Vec::new();
    for t in territories {
        let bytes = METADATA
            .get(t.start..t.end)
            .ok_or_else(|| format!("the metadata of {} is missing", t.id))?;
        let meta: loader::Metadata = postcard::from_bytes(bytes)
            .map_err(|e| format!("the metadata of {} is unreadable: {e}", t.id))?;
        metadata.push(meta);
    }
    Database::from(metadata).map_err(|e| format!("phone metadata: {e}"))
}

/// The databases this instance built, by default region (a region without
/// metadata, or none, is `""`).
#[derive(Default)]
struct Cache {
    /// The default region's calling code.
    home: BTreeMap<String, Database>,
    /// The default region beside another calling code.
    with_code: BTreeMap<(String, u16), Database>,
}

thread_local! {
    static CACHE: RefCell<Cache> = RefCell::new(Cache::default());
}

/// The databases for one default region, built on first use.
pub(super) struct Databases<'c> {
    cache: &'c mut Cache,
    region: String,
    home: Option<&'static Territory>,
}

impl Databases<'_> {
    /// The calling code of the default region.
    pub(super) fn home_code(&self) -> Option<u16> {
        self.home.map(|t| t.code)
    }

    /// The default region's calling code, all its territories.
    pub(super) fn home(&mut self) -> Result<&Database, String> {
        if !self.cache.home.contains_key(&self.region) {
            let territories = self.home.map(|t| group(t.code)).unwrap_or_default();
            let database = build(territories)?;
            self.cache.home.insert(self.region.clone(), database);
        }
        self.cache
            .home
            .get(&self.region)
            .ok_or_else(|| "phone metadata: the default region's database vanished".to_string())
    }

    /// The default region's own territory beside all territories of `code`.
    pub(super) fn with_code(&mut self, code: u16) -> Result<&Database, String> {
        let key = (self.region.clone(), code);
        if !self.cache.with_code.contains_key(&key) {
            let database = build(self.home.into_iter().chain(group(code)))?;
            self.cache.with_code.insert(key.clone(), database);
        }
        self.cache
            .with_code
            .get(&key)
            .ok_or_else(|| format!("phone metadata: the database of +{code} vanished"))
    }
}

/// Runs `f` with the databases of `region` (an ISO 3166 alpha-2 code the
/// parser knows, or `None`).
pub(super) fn with<T>(region: Option<&str>, f: impl FnOnce(&mut Databases<'_>) -> T) -> T {
    let home = region.and_then(territory);
    CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        let mut databases = Databases {
            cache: &mut cache,
            region: home.map(|t| t.id).unwrap_or_default().to_string(),
            home,
        };
        f(&mut databases)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_territory_of_the_crate_is_here_and_builds() {
        let crate_db = &*phonenumber::metadata::DATABASE;
        let mut territories = 0;
        for code in 1..1000 {
            let ours: Vec<&str> = group(code).iter().map(|t| t.id).collect();
            let theirs = crate_db.region(&code).unwrap_or_default();
            assert_eq!(ours, theirs, "+{code}: territories or their order differ");
            if !ours.is_empty() {
                let db = build(group(code)).unwrap_or_else(|e| panic!("+{code}: {e}"));
                assert_eq!(db.region(&code).unwrap_or_default(), theirs, "+{code}");
            }
            territories += ours.len();
        }
        // 245 territories and 9 non-geographic codes (+800, +808, ...).
        assert_eq!(territories, TERRITORIES.len());
        assert!(territories > 250, "{territories}");
    }

    #[test]
    fn codes_are_found_wherever_they_start() {
        // 0 starts no code; 1 at 1 (and 2), 44 (GB) at 3, 420 (CZ) at 4,
        // 20 (EG) at 5, 7 (RU) at 7, ...
        let codes = codes_in(b"01144207946");
        assert_eq!(&codes[..5], &[1, 44, 420, 20, 7], "{codes:?}");
        assert!(codes_in(b"0000").is_empty());
        assert!(codes.iter().all(|&c| is_code(c)));
    }
}
