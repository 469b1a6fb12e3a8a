//! Automatic association by e-mail address, as a pure function.
//!
//! [`propose`] pairs CRM users with PBX extensions that carry the same e-mail
//! address. It makes no host calls and stores nothing, so it runs the same in
//! wasm and natively and can be benchmarked from another crate:
//!
//! ```
//! use pbx_crm_sdk::matching::{propose, Reason, UserEmail};
//! use pbx_crm_sdk::bindings::pbx::crm::directory::Extension;
//!
//! /// A CRM user as the plugin keeps it.
//! struct Owner { id: String, email: Option<String> }
//!
//! impl UserEmail for Owner {
//!     fn id(&self) -> &str { &self.id }
//!     fn email(&self) -> Option<&str> { self.email.as_deref() }
//! }
//!
//! let users = [Owner { id: "005A".into(), email: Some(" Ann@Acme.org ".into()) }];
//! let extensions = [Extension {
//!     number: "1001".into(),
//!     name: "Ann".into(),
//!     email: Some("ann@acme.org".into()),
//! }];
//! let result = propose(&users, &extensions);
//! assert_eq!(result.matches[0].user_id, "005A");
//! assert_eq!(result.matches[0].extension, "1001");
//! assert!(result.unmatched.is_empty());
//! # let _ = Reason::NoEmail;
//! ```
//!
//! Speed: one pass over each side building a hash map keyed by the
//! normalized address, then one pass over the users. Addresses that are
//! already lower-case ASCII are borrowed, not copied, so the common case
//! allocates only the maps and the result. 100,000 users against 100,000
//! extensions take a few tens of milliseconds natively.

use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::bindings::pbx::crm::directory::Extension;

/// A CRM user as matching sees it: an id and an e-mail address (as the
/// CRM has it; [`propose`] normalizes it).
pub trait UserEmail {
    /// The CRM's id of the user.
    fn id(&self) -> &str;
    /// The user's e-mail address, if any.
    fn email(&self) -> Option<&str>;
}

/// What [`propose`] found: pairs to confirm, and users left out with why.
/// Borrows the ids and numbers from its inputs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProposalResult<'a> {
    /// One extension per user, never one extension for two users; in the
    /// order of the users given.
    pub matches: Vec<Match<'a>>,
    /// Every user without a match, in the order of the users given.
    pub unmatched: Vec<Unmatched<'a>>,
}

/// A proposed pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Match<'a> {
    /// The CRM user's id.
    pub user_id: &'a str,
    /// The extension number.
    pub extension: &'a str,
}

/// A user left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unmatched<'a> {
    /// The CRM user's id.
    pub user_id: &'a str,
    /// Why no extension was proposed.
    pub reason: Reason<'a>,
}

/// Why a user got no proposal. When several apply, the first in this order
/// wins: an empty address, then no extension with it, then several
/// extensions with it, then several users with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason<'a> {
    /// The user has no (or only a blank) e-mail address.
    NoEmail,
    /// No extension has the user's address.
    NoExtension,
    /// Several extensions share the address: their numbers, in directory
    /// order. Proposing one would be a guess.
    SharedEmail(Vec<&'a str>),
    /// Several users share the address: the other users' ids, in the order
    /// given. Giving the extension to one of them would be a guess.
    SharedUserEmail(Vec<&'a str>),
}

/// The form two addresses are compared in: trimmed and lower-cased with
/// Unicode rules (so "Zoë@Exämple.org" equals "zoë@exämple.org"). `None`
/// for a blank address. Lower-case ASCII input is borrowed, not copied.
pub fn normalize_email(raw: &str) -> Option<Cow<'_, str>> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        None
    } else if trimmed.is_ascii() {
        if trimmed.bytes().any(|b| b.is_ascii_uppercase()) {
            Some(Cow::Owned(trimmed.to_ascii_lowercase()))
        } else {
            Some(Cow::Borrowed(trimmed))
        }
    } else {
        Some(Cow::Owned(trimmed.to_lowercase()))
    }
}

/// Propose one extension per user where exactly one user and exactly one
/// extension share an e-mail address (compared after [`normalize_email`]).
///
/// Existing associations play no part: the result is a complete new set
/// for the administrator to confirm. Inputs may be in any order; the
/// outputs follow the order of `users` (and of `extensions` inside a
/// [`Reason::SharedEmail`]). Extensions without an address are ignored.
pub fn propose<'a, U: UserEmail>(
    users: &'a [U],
    extensions: &'a [Extension],
) -> ProposalResult<'a> {
    // The extensions' addresses, kept alive for the map that borrows them.
    let ext_keys: Vec<Option<Cow<'a, str>>> = extensions
        .iter()
        .map(|e| e.email.as_deref().and_then(normalize_email))
        .collect();

    // One group per address that some extension has. Users are only ever
    // grouped under such addresses: a user whose address no extension has
    // is "no-extension" whether or not another user shares it, so those
    // addresses need no map entry at all.
    let mut by_email: HashMap<Key<'_>, u32, BuildHasherDefault<FxHasher>> =
        HashMap::with_capacity_and_hasher(extensions.len(), BuildHasherDefault::default());
    let mut groups: Vec<Group> = Vec::with_capacity(extensions.len());
    let mut ext_next = vec![END; extensions.len()];
    for (i, key) in ext_keys.iter().enumerate() {
        let Some(key) = key.as_deref() else {
            continue;
        };
        // Lists cross the wasm boundary with 32-bit lengths: indexes fit.
        let i = i as u32;
        let g = *by_email.entry(Key(key)).or_insert_with(|| {
            groups.push(Group::default());
            (groups.len() - 1) as u32
        });
        let group = &mut groups[g as usize];
        group.extensions.push(i, &mut ext_next);
    }

    // Each user's group (or why there is none), chaining users that share
    // a group.
    let mut user_group = vec![NO_EXTENSION; users.len()];
    let mut user_next = vec![END; users.len()];
    for (i, user) in users.iter().enumerate() {
        let Some(key) = user.email().and_then(normalize_email) else {
            user_group[i] = NO_EMAIL;
            continue;
        };
        if let Some(&g) = by_email.get(&Key(key.as_ref())) {
            user_group[i] = g;
            groups[g as usize].users.push(i as u32, &mut user_next);
        }
    }

    let mut result = ProposalResult {
        matches: Vec::with_capacity(users.len().min(extensions.len())),
        unmatched: Vec::new(),
    };
    for (i, (user, &g)) in users.iter().zip(&user_group).enumerate() {
        let user_id = user.id();
        let reason = match g {
            NO_EMAIL => Reason::NoEmail,
            NO_EXTENSION => Reason::NoExtension,
            g => {
                let group = &groups[g as usize];
                if group.extensions.count > 1 {
                    Reason::SharedEmail(
                        group
                            .extensions
                            .members(&ext_next)
                            .map(|j| extensions[j].number.as_str())
                            .collect(),
                    )
                } else if group.users.count > 1 {
                    Reason::SharedUserEmail(
                        group
                            .users
                            .members(&user_next)
                            .filter(|&j| j != i)
                            .map(|j| users[j].id())
                            .collect(),
                    )
                } else {
                    // The only user with the only extension of this
                    // address: no other user can be proposed it.
                    result.matches.push(Match {
                        user_id,
                        extension: extensions[group.extensions.first as usize].number.as_str(),
                    });
                    continue;
                }
            }
        };
        result.unmatched.push(Unmatched { user_id, reason });
    }
    result
}

/// A normalized address as a map key. Hashing and comparing go eight bytes
/// at a time: in wasm, `str`'s comparison is a byte-by-byte `memcmp`, which
/// made the lookups markedly slower there than natively.
#[derive(Clone, Copy)]
struct Key<'a>(&'a str);

impl PartialEq for Key<'_> {
    #[inline]
    fn eq(&self, other: &Self) -> bool {
        let (a, b) = (self.0.as_bytes(), other.0.as_bytes());
        if a.len() != b.len() {
            return false;
        }
        let mut a8 = a.chunks_exact(8);
        let mut b8 = b.chunks_exact(8);
        for (x, y) in (&mut a8).zip(&mut b8) {
            if word(x) != word(y) {
                return false;
            }
        }
        word(a8.remainder()) == word(b8.remainder())
    }
}

impl Eq for Key<'_> {}

impl std::hash::Hash for Key<'_> {
    #[inline]
    fn hash<S: Hasher>(&self, state: &mut S) {
        state.write(self.0.as_bytes());
    }
}

/// Up to eight bytes as a little-endian word (zero-padded).
#[inline]
fn word(bytes: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    let n = bytes.len().min(8);
    w[..n].copy_from_slice(&bytes[..n]);
    u64::from_le_bytes(w)
}

/// No next member / no group.
const END: u32 = u32::MAX;
/// `user_group` marker: the user has no address.
const NO_EMAIL: u32 = u32::MAX - 1;
/// `user_group` marker: no extension has the user's address.
const NO_EXTENSION: u32 = u32::MAX;

/// The extensions and users sharing one address.
#[derive(Default)]
struct Group {
    extensions: Chain,
    users: Chain,
}

/// Items of one group, in input order, chained through a `next` vector
/// shared by all groups of their side, so a group allocates nothing.
#[derive(Clone, Copy)]
struct Chain {
    first: u32,
    last: u32,
    count: u32,
}

impl Default for Chain {
    fn default() -> Self {
        Self {
            first: END,
            last: END,
            count: 0,
        }
    }
}

impl Chain {
    fn push(&mut self, item: u32, next: &mut [u32]) {
        if self.count == 0 {
            self.first = item;
        } else if let Some(slot) = next.get_mut(self.last as usize) {
            *slot = item;
        }
        self.last = item;
        self.count += 1;
    }

    /// The indexes of the members, in input order.
    fn members<'n>(&self, next: &'n [u32]) -> impl Iterator<Item = usize> + 'n {
        let mut at = if self.count == 0 { END } else { self.first };
        std::iter::from_fn(move || {
            if at == END {
                return None;
            }
            let this = at as usize;
            at = next.get(this).copied().unwrap_or(END);
            Some(this)
        })
    }
}

/// The Fx hash (rustc's) with a final mix: much faster than SipHash for
/// short keys. Not resistant to crafted collisions, which is fine here: the
/// keys are the administrator's own directory and CRM users, and the work
/// is per call.
#[derive(Default, Clone, Copy)]
struct FxHasher {
    hash: u64,
}

const FX_SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(FX_SEED);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            self.add(word(chunk));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            // The length keeps "a" and "a\0" apart.
            self.add(word(rest) ^ ((rest.len() as u64) << 59));
        }
    }

    #[inline]
    fn write_u8(&mut self, byte: u8) {
        self.add(u64::from(byte));
    }

    #[inline]
    fn finish(&self) -> u64 {
        // The multiply leaves the low bits poorly mixed (they depend only on
        // the inputs' low bits), and the map picks buckets by the low bits:
        // on 32-bit wasm, with addresses that differ only in their middle,
        // that made nearly every key collide. Fold the high bits in.
        let h = self.hash;
        let h = (h ^ (h >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^ (h >> 33)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A CRM user of the tests.
    struct User {
        id: String,
        email: Option<String>,
    }

    impl UserEmail for User {
        fn id(&self) -> &str {
            &self.id
        }
        fn email(&self) -> Option<&str> {
            self.email.as_deref()
        }
    }

    fn user(id: &str, email: Option<&str>) -> User {
        User {
            id: id.into(),
            email: email.map(Into::into),
        }
    }

    fn ext(number: &str, email: Option<&str>) -> Extension {
        Extension {
            number: number.into(),
            name: format!("Ext {number}"),
            email: email.map(Into::into),
        }
    }

    fn reason_of<'a>(r: &'a ProposalResult<'a>, id: &str) -> Option<&'a Reason<'a>> {
        r.unmatched
            .iter()
            .find(|u| u.user_id == id)
            .map(|u| &u.reason)
    }

    fn match_of<'a>(r: &'a ProposalResult<'a>, id: &str) -> Option<&'a str> {
        r.matches
            .iter()
            .find(|m| m.user_id == id)
            .map(|m| m.extension)
    }

    #[test]
    fn normalization_trims_and_lowercases_unicode() {
        assert_eq!(normalize_email("  ").as_deref(), None);
        assert_eq!(normalize_email("").as_deref(), None);
        assert_eq!(normalize_email(" a@b.c ").as_deref(), Some("a@b.c"));
        assert!(matches!(normalize_email("a@b.c"), Some(Cow::Borrowed(_))));
        assert_eq!(
            normalize_email("Ann@ACME.org").as_deref(),
            Some("ann@acme.org")
        );
        assert_eq!(
            normalize_email("\u{a0}Zoë@Exämple.ORG\t").as_deref(),
            Some("zoë@exämple.org")
        );
        assert_eq!(
            normalize_email("ÅSA@Örebro.SE").as_deref(),
            Some("åsa@örebro.se")
        );
    }

    #[test]
    fn every_case_gets_its_reason() {
        let users = [
            user("u1", Some("ann@acme.org")),
            user("u2", None),
            user("u3", Some("   ")),
            user("u4", Some("nobody@acme.org")),
            user("u5", Some("desk@acme.org")),
            user("u6", Some("Shared@Acme.org")),
            user("u7", Some("shared@acme.org ")),
            user("u8", Some("ZOË@exämple.org")),
            user("u9", Some("trim@acme.org")),
        ];
        let extensions = [
            ext("1001", Some("ANN@acme.org")),
            ext("1002", Some("desk@acme.org")),
            ext("1003", Some("shared@acme.org")),
            ext("1004", None),
            ext("1005", Some(" desk@ACME.org")),
            ext("1006", Some("zoë@Exämple.org")),
            ext("1007", Some("\ttrim@acme.org  ")),
            ext("1008", Some("")),
        ];
        let r = propose(&users, &extensions);
        assert_eq!(match_of(&r, "u1"), Some("1001"));
        assert_eq!(reason_of(&r, "u2"), Some(&Reason::NoEmail));
        assert_eq!(reason_of(&r, "u3"), Some(&Reason::NoEmail));
        assert_eq!(reason_of(&r, "u4"), Some(&Reason::NoExtension));
        assert_eq!(
            reason_of(&r, "u5"),
            Some(&Reason::SharedEmail(vec!["1002", "1005"]))
        );
        assert_eq!(
            reason_of(&r, "u6"),
            Some(&Reason::SharedUserEmail(vec!["u7"]))
        );
        assert_eq!(
            reason_of(&r, "u7"),
            Some(&Reason::SharedUserEmail(vec!["u6"]))
        );
        assert_eq!(match_of(&r, "u8"), Some("1006"));
        assert_eq!(match_of(&r, "u9"), Some("1007"));
        assert_eq!(r.matches.len() + r.unmatched.len(), users.len());
        // Outputs follow the users' order.
        let order: Vec<&str> = r.matches.iter().map(|m| m.user_id).collect();
        assert_eq!(order, ["u1", "u8", "u9"]);
    }

    #[test]
    fn three_users_sharing_list_the_two_others() {
        let users = [
            user("a", Some("x@y.z")),
            user("b", Some("X@Y.Z")),
            user("c", Some("x@y.z")),
        ];
        let extensions = [ext("1", Some("x@y.z"))];
        let r = propose(&users, &extensions);
        assert!(r.matches.is_empty());
        assert_eq!(
            reason_of(&r, "b"),
            Some(&Reason::SharedUserEmail(vec!["a", "c"]))
        );
    }

    #[test]
    fn empty_inputs_give_empty_results() {
        assert_eq!(propose::<User>(&[], &[]), ProposalResult::default());
        let users = [user("a", Some("a@b.c"))];
        let r = propose(&users, &[]);
        assert_eq!(reason_of(&r, "a"), Some(&Reason::NoExtension));
    }

    #[test]
    fn the_hasher_tells_lengths_apart() {
        let hash = |s: &str| {
            let mut h = FxHasher::default();
            h.write(s.as_bytes());
            h.finish()
        };
        assert_ne!(hash("a"), hash("a\0"));
        assert_ne!(hash("abcdefgh"), hash("abcdefgh\0"));
    }

    /// Maps pick buckets by the low bits (on 32-bit wasm by the low 32):
    /// addresses differing only in their middle must spread there.
    #[test]
    fn the_hash_spreads_over_the_low_bits() {
        let low: std::collections::HashSet<u64> = (0..10_000)
            .map(|i| {
                let mut h = FxHasher::default();
                h.write(format!("user{i}@example.org").as_bytes());
                h.finish() & 0xffff
            })
            .collect();
        assert!(low.len() > 8_500, "{} distinct of 10,000", low.len());
    }

    #[test]
    fn keys_compare_by_content() {
        for (a, b) in [("", ""), ("abc", "abc"), ("abcdefghij", "abcdefghij")] {
            assert!(Key(a) == Key(b));
        }
        for (a, b) in [
            ("a", "b"),
            ("abcdefghij", "abcdefghik"),
            ("abc", "abcd"),
            ("a", "a\0"),
        ] {
            assert!(Key(a) != Key(b), "{a:?} {b:?}");
        }
    }

    /// 100,000 users against 100,000 extensions: every third user has no
    /// address, a third of the addresses are mixed-case, every fifth
    /// extension has an address no user has.
    /// Prints the time; asserts the numbers, not the time (debug builds and
    /// busy machines vary).
    #[test]
    fn a_hundred_thousand_each_way() {
        const N: usize = 100_000;
        let users: Vec<User> = (0..N)
            .map(|i| {
                let email = match i % 3 {
                    0 => None,
                    1 => Some(format!("user{i}@Example.org")),
                    _ => Some(format!("user{i}@example.org")),
                };
                user(&format!("005{i:015}"), email.as_deref())
            })
            .collect();
        // Every fifth extension belongs to nobody in the CRM.
        let extensions: Vec<Extension> = (0..N)
            .map(|i| {
                let email = if i % 5 == 0 {
                    format!("desk{i}@pbx.example.org")
                } else {
                    format!("user{i}@example.org")
                };
                ext(&format!("{}", 100_000 + i), Some(&email))
            })
            .collect();
        let start = std::time::Instant::now();
        let r = propose(&users, &extensions);
        let took = start.elapsed();
        println!(
            "propose(): {} users x {} extensions in {:.1} ms ({} matches)",
            users.len(),
            extensions.len(),
            took.as_secs_f64() * 1000.0,
            r.matches.len()
        );
        let expected = (0..N).filter(|i| i % 3 != 0 && i % 5 != 0).count();
        assert_eq!(r.matches.len(), expected);
        assert_eq!(r.matches.len() + r.unmatched.len(), N);
        let no_email = r
            .unmatched
            .iter()
            .filter(|u| u.reason == Reason::NoEmail)
            .count();
        assert_eq!(no_email, N.div_ceil(3));
        for m in r.matches.iter().take(1000) {
            let i: usize = m.user_id[3..].parse().unwrap_or(usize::MAX);
            assert_eq!(m.extension, format!("{}", 100_000 + i));
        }
    }
}
