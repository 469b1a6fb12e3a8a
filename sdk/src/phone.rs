//! Phone numbers: normalizing what a PBX or a person typed to E.164, with a
//! clear reason when that is impossible, and the forms the call features
//! need (E.164 for keys and searches, the national significant number as a
//! second search, the international form for people to read).
//!
//! Input is checked before the `phonenumber` crate sees it (length, allowed
//! characters, one leading `+`), so odd input gets a precise reason and the
//! parser only ever sees short strings of digits and phone punctuation.

mod metadata;

use std::fmt;
use std::str::FromStr;

use phonenumber::metadata::{Database, Format};
use phonenumber::{PhoneNumber, country};

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
    let (id, clean) = prepare(input, default_region)?;
    read_number(id, &clean)
}

/// Checks `input` and `default_region` before the parser sees them; gives
/// the region's id and the input as digits, spaces and a leading plus.
fn prepare(input: &str, default_region: &str) -> Result<(Option<country::Id>, String), BadNumber> {
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
    Ok((id, clean))
}

/// Parses and formats a prepared number with the metadata it needs.
fn read_number(id: Option<country::Id>, clean: &str) -> Result<Normalized, BadNumber> {
    let digits: Vec<u8> = clean.bytes().filter(u8::is_ascii_digit).collect();
    metadata::with(id.as_ref().map(AsRef::as_ref), |databases| {
        // The default region's code first (most numbers), then the codes
        // in the digits (see `metadata` for why the answer is the whole
        // database's).
        let home = databases.home().map_err(BadNumber::Invalid)?;
        let unknown_code = match read(home, id, clean) {
            Read::Done(answer) => return answer,
            Read::UnknownCode(e) => e,
        };
        let home_code = databases.home_code();
        for code in metadata::codes_in(&digits) {
            if Some(code) == home_code {
                continue;
            }
            let database = databases.with_code(code).map_err(BadNumber::Invalid)?;
            if let Read::Done(answer) = read(database, id, clean) {
                return answer;
            }
        }
        Err(BadNumber::Invalid(unknown_code.to_string()))
    })
}

/// What one database made of a number.
enum Read {
    Done(Result<Normalized, BadNumber>),
    /// The database does not have the number's calling code, if it has one.
    UnknownCode(phonenumber::ParseError),
}

/// Parses, checks and formats `clean` with `database`.
fn read(database: &Database, id: Option<country::Id>, clean: &str) -> Read {
    let mut number = match phonenumber::parse_with(database, id, clean) {
        Ok(number) => number,
        Err(e @ phonenumber::ParseError::InvalidCountryCode) => return Read::UnknownCode(e),
        Err(e) => return Read::Done(Err(BadNumber::Invalid(e.to_string()))),
    };
    if let Some(whole) = read_again(&number, id, clean, |c| {
        phonenumber::parse_with(database, None, c)
    }) {
        number = whole;
    }
    Read::Done(checked(database, &number))
}

/// The parser strips the default region's national prefix even from a
/// number that carries another country's code ("1" for the US turned
/// +44 161 496 0000 into +44 61 496 0000). A number with its plus that lost
/// digits is read again without the region (`parse`), and that reading wins
/// when it keeps every digit. (A plus before an international prefix,
/// "+00 …", still needs the region.)
fn read_again(
    number: &PhoneNumber,
    id: Option<country::Id>,
    clean: &str,
    parse: impl FnOnce(&str) -> Result<PhoneNumber, phonenumber::ParseError>,
) -> Option<PhoneNumber> {
    if !clean.starts_with('+') || id.is_none() {
        return None;
    }
    let digits = |n: &PhoneNumber| format!("{}{}", n.code().value(), n.national());
    let given: String = clean.chars().filter(char::is_ascii_digit).collect();
    if digits(number) == given {
        return None;
    }
    parse(clean).ok().filter(|whole| digits(whole) == given)
}

fn checked(database: &Database, number: &PhoneNumber) -> Result<Normalized, BadNumber> {
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
    let reread = phonenumber::parse_with(database, None, &e164)
        .map_err(|e| BadNumber::Invalid(e.to_string()))?;
    if reread.code().value() != code || reread.national().to_string() != national {
        return Err(BadNumber::Invalid(format!(
            "it reads as {e164}, which is not a number of any country's numbering plan"
        )));
    }
    let pretty = international(database, code, &national);
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

/// The international form as `phonenumber`'s formatter writes it
/// (`Mode::International`): the first of the code's main territory's
/// formats whose leading digits and pattern fit, else the bare number. Its
/// own formatter falls back to the crate's whole built-in database, which
/// would put that database (0.5 MB) back into the plugin.
fn international(database: &Database, code: u16, national: &str) -> String {
    let Some(meta) = database.by_code(&code).and_then(|m| m.into_iter().next()) else {
        return String::new();
    };
    let formats = if meta.international_formats().is_empty() {
        meta.formats()
    } else {
        meta.international_formats()
    };
    let fits = |format: &&Format| {
        let leading = format.leading_digits();
        leading.is_empty()
            || (leading
                .last()
                .and_then(|re| re.find(national))
                .is_some_and(|m| m.start() == 0)
                && format
                    .pattern()
                    .find(national)
                    .is_some_and(|m| m.start() == 0 && m.end() == national.len()))
    };
    match formats.iter().find(fits) {
        Some(format) => format!(
            "+{code} {}",
            format.pattern().replace(national, format.format())
        ),
        None => format!("+{code} {national}"),
    }
}

/// What the build snapshots (`wizer-initialize`): the parser's own
/// pattern for what can be a phone number, compiled. The metadata is not
/// warmed: building a `phonenumber` database seeds a std `HashMap` (its
/// regular-expression cache) from `wasi:random`, which would make the
/// snapshot differ from build to build and give every instance the same,
/// published hash seed. Each instance builds the databases it needs on its
/// first lookup instead (`metadata`). Returns whether the pattern matched.
pub fn warm_up() -> bool {
    phonenumber::is_viable("+1 415 555 0100")
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

    /// `normalize` as it was with the crate's whole built-in database and
    /// its own formatter: what the lazy databases must answer alike.
    fn with_whole_database(input: &str, region: &str) -> Result<Normalized, BadNumber> {
        let (id, clean) = prepare(input, region)?;
        let invalid = |e: phonenumber::ParseError| BadNumber::Invalid(e.to_string());
        let mut number = phonenumber::parse(id, &clean).map_err(invalid)?;
        // The same second reading as `read`.
        if let Some(whole) = read_again(&number, id, &clean, |c| phonenumber::parse(None, c)) {
            number = whole;
        }
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
        let reread = phonenumber::parse(None, &e164).map_err(invalid)?;
        if reread.code().value() != code || reread.national().to_string() != national {
            return Err(BadNumber::Invalid(format!(
                "it reads as {e164}, which is not a number of any country's numbering plan"
            )));
        }
        let pretty = number
            .format()
            .mode(phonenumber::Mode::International)
            .to_string();
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

    fn same_as_whole_database(input: &str, region: &str) -> bool {
        let ours = normalize(input, region);
        let whole = with_whole_database(input, region);
        assert_eq!(ours, whole, "{input:?} in {region:?}");
        ours.is_ok()
    }

    /// Every territory's example numbers, written nationally, with a plus,
    /// and after other countries' international prefixes, read with their
    /// own and with other default regions.
    #[test]
    fn example_numbers_read_as_with_the_whole_database() {
        let mut territories: Vec<_> = phonenumber::metadata::DATABASE.iter().collect();
        territories.sort_by_key(|m| (m.country_code(), m.id().to_string()));
        let mut normalized = 0;
        for meta in territories {
            let d = meta.descriptors();
            let kinds = [
                d.fixed_line(),
                d.mobile(),
                d.toll_free(),
                d.premium_rate(),
                d.shared_cost(),
                d.personal_number(),
                d.voip(),
                d.pager(),
                d.uan(),
                d.voicemail(),
            ];
            let (id, code) = (meta.id(), meta.country_code());
            let prefix = meta.national_prefix().unwrap_or("");
            for example in kinds.into_iter().flatten().filter_map(|k| k.example()) {
                let inputs = [
                    (example.to_string(), id),
                    (format!("{prefix}{example}"), id),
                    (format!("+{code} {example}"), ""),
                    (format!("+{code} {example}"), "US"),
                    (format!("011 {code} {example}"), "US"),
                    (format!("00 {code} {example}"), "DE"),
                    (format!("0011 {code} {example}"), "AU"),
                    (format!("+011 {code} {example}"), "US"),
                    (example.to_string(), "US"),
                    (example.to_string(), "GB"),
                ];
                for (input, region) in &inputs {
                    normalized += usize::from(same_as_whole_database(input, region));
                }
            }
        }
        // 245 territories have at least a fixed-line example; most have
        // several kinds, each read in several ways.
        assert!(normalized > 5_000, "only {normalized} normalized");
    }

    /// Digit soup: random digits behind nothing, a plus or an international
    /// prefix, in several default regions.
    #[test]
    fn random_digits_read_as_with_the_whole_database() {
        let regions = [
            "US", "GB", "DE", "FR", "AU", "BR", "IN", "RU", "CA", "AQ", "",
        ];
        let starts = ["", "+", "00", "011", "+00", "0"];
        // xorshift: the same numbers every run.
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut normalized = 0;
        for _ in 0..4_000 {
            let len = 3 + (next() % 15) as usize;
            let digits: String = (0..len)
                .map(|_| char::from(b'0' + (next() % 10) as u8))
                .collect();
            let start = starts[(next() % starts.len() as u64) as usize];
            let region = regions[(next() % regions.len() as u64) as usize];
            normalized += usize::from(same_as_whole_database(&format!("{start}{digits}"), region));
        }
        assert!(normalized > 500, "only {normalized} normalized");
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
        // The US national prefix ("1") is not stripped from another
        // country's number that starts with 1 (Manchester's 161).
        assert_eq!(ok("+441614960000", "US").e164, "+441614960000");
        assert_eq!(ok("+44 161 496 0000", "CA").e164, "+441614960000");
        assert_eq!(
            ok("+7 1234 56 78 90", "US").e164,
            ok("+7 1234 56 78 90", "").e164
        );
        assert_eq!(ok("+1 212 555 0100", "US").e164, "+12125550100");
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
