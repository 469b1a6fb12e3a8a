//! Phone numbers: normalizing what a PBX or a person typed to E.164, with a
//! clear reason when that is impossible, and the forms the call features
//! need (E.164 for keys and searches, the national significant number as a
//! second search, the international form for people to read).
//!
//! Input is checked before the `phonenumber` crate sees it (length, allowed
//! characters, one leading `+`), so odd input gets a precise reason and the
//! parser only ever sees short strings of digits and phone punctuation.

use std::fmt;
use std::str::FromStr;

use phonenumber::country;

/// The longest input looked at, in characters. Real numbers with spaces,
/// brackets and an international prefix stay far below.
pub const MAX_INPUT_CHARS: usize = 40;
/// E.164 allows at most 15 digits; an international prefix (`011`, `00`)
/// may come on top.
const MAX_INPUT_DIGITS: usize = 18;
/// Fewer digits than this (country code included) is no subscriber number.
const MIN_E164_DIGITS: usize = 7;
/// E.164's limit, country code included.
const MAX_E164_DIGITS: usize = 15;

/// A normalized phone number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Normalized {
    /// E.164, e.g. `+14155550100`.
    pub e164: String,
    /// The national significant number, e.g. `4155550100`.
    pub national: String,
    /// For people: `+1 415 555 0100` (international format, spaces only).
    pub international: String,
}

/// Why a number could not be normalized. The text names the problem and
/// what a valid number looks like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BadNumber {
    /// Nothing but white space.
    Empty,
    /// Longer than a phone number can be.
    TooLong,
    /// Contains letters (a SIP URI, "anonymous", a vanity number).
    Letters,
    /// Contains a character that is not part of a phone number.
    Character(char),
    /// A `+` that is not the first character, or several.
    Plus,
    /// No digits at all (e.g. only "+").
    NoDigits,
    /// Too few digits for a subscriber number.
    TooShort,
    /// No country code, and the default region is not an ISO 3166 code.
    Region(String),
    /// The parser refused it (the reason is the parser's).
    Invalid(String),
}

impl fmt::Display for BadNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BadNumber::Empty => write!(f, "is empty"),
            BadNumber::TooLong => write!(
                f,
                "is too long for a phone number (E.164 allows at most {MAX_E164_DIGITS} digits)"
            ),
            BadNumber::Letters => write!(f, "contains letters; a phone number has digits only"),
            BadNumber::Character(c) => {
                write!(f, "contains {c:?}, which is not part of a phone number")
            }
            BadNumber::Plus => write!(f, "has a \"+\" that is not its first character"),
            BadNumber::NoDigits => write!(f, "has no digits"),
            BadNumber::TooShort => write!(f, "has too few digits for a phone number"),
            BadNumber::Region(region) => write!(
                f,
                "has no country code, and the PBX's default region {region:?} is not a country code such as US or GB"
            ),
            BadNumber::Invalid(why) => write!(f, "is not a valid phone number ({why})"),
        }
    }
}

impl BadNumber {
    /// The whole message for `input`, e.g. `the number "abc" contains
    /// letters; ...; write it like +1 415 555 0100`.
    pub fn describe(&self, input: &str) -> String {
        let shown: String = input.chars().take(MAX_INPUT_CHARS).collect();
        let cut = if input.chars().count() > MAX_INPUT_CHARS {
            "…"
        } else {
            ""
        };
        format!(
            "the number {:?} {self}; write it in international form, e.g. +1 415 555 0100",
            format!("{shown}{cut}")
        )
    }
}

/// Normalize `input` to E.164, reading numbers without a country code as
/// numbers of `default_region` (ISO 3166 alpha-2, e.g. "US"). Never panics.
pub fn normalize(input: &str, default_region: &str) -> Result<Normalized, BadNumber> {
    let trimmed = input.trim();
    if trimmed.is_empty() {
        return Err(BadNumber::Empty);
    }
    if trimmed.chars().count() > MAX_INPUT_CHARS {
        return Err(BadNumber::TooLong);
    }
    let mut digits = 0usize;
    for (i, c) in trimmed.char_indices() {
        match c {
            '0'..='9' => digits += 1,
            '+' if i == 0 => {}
            '+' => return Err(BadNumber::Plus),
            ' ' | '\t' | '\u{a0}' | '(' | ')' | '-' | '.' | '/' => {}
            c if c.is_alphabetic() => return Err(BadNumber::Letters),
            c => return Err(BadNumber::Character(c)),
        }
    }
    if digits == 0 {
        return Err(BadNumber::NoDigits);
    }
    if digits > MAX_INPUT_DIGITS {
        return Err(BadNumber::TooLong);
    }
    // The parser sees only digits, spaces and the leading plus.
    let clean: String = trimmed
        .chars()
        .map(|c| {
            if c.is_ascii_digit() || c == '+' {
                c
            } else {
                ' '
            }
        })
        .collect();
    let international = trimmed.starts_with('+');
    let region = default_region.trim().to_ascii_uppercase();
    let id = if region.len() == 2 && region.bytes().all(|b| b.is_ascii_uppercase()) {
        country::Id::from_str(&region).ok()
    } else {
        None
    };
    if id.is_none() && !international {
        return Err(BadNumber::Region(
            default_region.trim().chars().take(16).collect(),
        ));
    }
    let number = phonenumber::parse(id, &clean).map_err(|e| BadNumber::Invalid(e.to_string()))?;
    let code = number.code().value();
    let national = number.national().to_string();
    let e164_digits = code.to_string().len() + national.len();
    if e164_digits > MAX_E164_DIGITS {
        return Err(BadNumber::TooLong);
    }
    if e164_digits < MIN_E164_DIGITS || national.len() < 4 {
        return Err(BadNumber::TooShort);
    }
    let e164 = format!("+{code}{national}");
    // What comes out must read back as itself: the parser accepts some
    // digit soup (e.g. international prefixes inside national numbers) that
    // is no E.164 number at all.
    let reread = phonenumber::parse(None, &e164).map_err(|e| BadNumber::Invalid(e.to_string()))?;
    if reread.code().value() != code || reread.national().to_string() != national {
        return Err(BadNumber::Invalid(format!(
            "it reads as {e164}, which is not a number of any country's numbering plan"
        )));
    }
    let pretty = number
        .format()
        .mode(phonenumber::Mode::International)
        .to_string();
    // The formatter knows the grouping of valid numbers; anything else is
    // shown as "+CC NSN".
    let pretty = if pretty.starts_with('+')
        && pretty.chars().filter(char::is_ascii_digit).count() == e164_digits
    {
        pretty.replace('-', " ")
    } else {
        format!("+{code} {national}")
    };
    Ok(Normalized {
        e164,
        national,
        international: pretty,
    })
}

/// Runs every country's example numbers through [`normalize`], so the
/// metadata is loaded and the regular expressions the parser, validator and
/// formatter use are compiled. The build snapshots the result
/// (`wizer-initialize`), so no call pays for it; returns how many example
/// numbers normalized.
pub fn warm_up() -> usize {
    let mut normalized = 0;
    for meta in phonenumber::metadata::DATABASE.iter() {
        let d = meta.descriptors();
        let kinds = [
            d.fixed_line(),
            d.mobile(),
            d.toll_free(),
            d.premium_rate(),
            d.shared_cost(),
            d.personal_number(),
            d.voip(),
            d.uan(),
        ];
        for example in kinds.into_iter().flatten().filter_map(|k| k.example()) {
            normalized += usize::from(normalize(example, meta.id()).is_ok());
        }
    }
    normalized
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::US_NUMBER_FORMATS;

    fn ok(input: &str, region: &str) -> Normalized {
        match normalize(input, region) {
            Ok(n) => n,
            Err(e) => panic!("{input:?}: {}", e.describe(input)),
        }
    }

    #[test]
    fn warm_up_normalizes_the_example_numbers_of_every_country() {
        let count = warm_up();
        // 245 territories have at least a fixed-line example; most have
        // several kinds. Fewer means the metadata walk stopped early.
        assert!(count > 600, "only {count} example numbers normalized");
        assert_eq!(ok("020 7946 0018", "GB").e164, "+442079460018");
    }

    #[test]
    fn every_usual_format_gives_the_same_e164() {
        let more = ["  +1 (415) 555-0100 ", "011 1 415 555 0100"];
        for input in US_NUMBER_FORMATS.into_iter().chain(more) {
            let n = ok(input, "US");
            assert_eq!(n.e164, "+14155550100", "{input}");
            assert_eq!(n.national, "4155550100", "{input}");
            assert_eq!(n.international, "+1 415 555 0100", "{input}");
        }
    }

    #[test]
    fn the_default_region_applies_only_without_a_country_code() {
        assert_eq!(ok("020 7946 0958", "GB").e164, "+442079460958");
        assert_eq!(ok("020 7946 0958", "gb").e164, "+442079460958");
        assert_eq!(ok("+44 20 7946 0958", "US").e164, "+442079460958");
        assert_eq!(ok("+44 20 7946 0958", "").e164, "+442079460958");
        assert_eq!(ok("+44 20 7946 0958", "").international, "+44 20 7946 0958");
        assert_eq!(ok("030 1234567", "DE").e164, "+49301234567");
        assert_eq!(ok("06 12 34 56 78", "FR").e164, "+33612345678");
    }

    #[test]
    fn bad_numbers_say_what_is_wrong() {
        let cases: &[(&str, &str, BadNumber)] = &[
            ("", "US", BadNumber::Empty),
            ("   ", "US", BadNumber::Empty),
            ("+", "US", BadNumber::NoDigits),
            ("()-", "US", BadNumber::NoDigits),
            ("anonymous", "US", BadNumber::Letters),
            ("1-800-FLOWERS", "US", BadNumber::Letters),
            ("sip:100@pbx", "US", BadNumber::Letters),
            ("415#555", "US", BadNumber::Character('#')),
            ("415+5550100", "US", BadNumber::Plus),
            ("++14155550100", "US", BadNumber::Plus),
            ("1234567890123456789", "US", BadNumber::TooLong),
            ("+1234567890123456", "US", BadNumber::TooLong),
            (&"1".repeat(500), "US", BadNumber::TooLong),
            ("4155550100", "", BadNumber::Region(String::new())),
            ("4155550100", "XX", BadNumber::Region("XX".into())),
            ("911", "US", BadNumber::TooShort),
        ];
        for (input, region, want) in cases {
            let got = normalize(input, region);
            assert_eq!(got.as_ref().err(), Some(want), "{input:?}: {got:?}");
            let text = want.describe(input);
            assert!(text.starts_with("the number "), "{text}");
            assert!(text.len() < 300, "{text}");
        }
        // Digit soup that the parser would turn into a non-number.
        assert!(matches!(
            normalize("00003((96(", "DE"),
            Err(BadNumber::Invalid(_))
        ));
        assert!(matches!(
            normalize("0", "US"),
            Err(BadNumber::Invalid(_) | BadNumber::TooShort)
        ));
    }
}
