//! How a phone search (`FIND {…} IN PHONE FIELDS`, or a number-like term in
//! any scope) matches a stored phone value: on digits only, formatting
//! ignored, the number as a whole (with or without its country code or a
//! national trunk `0`), a North American number also by its 7-digit local
//! number, and an extension on its own. docs/SALESFORCE.md ("Phone search")
//! says which of these Salesforce documents and which are this emulator's
//! reading of it.

/// Country calling codes of one digit; with [`TWO_DIGIT_CODES`] every other
/// code has three (ITU-T E.164 assigns them prefix-free, so the first digits
/// of an international number say how long its code is).
const ONE_DIGIT_CODES: &[&str] = &["1", "7"];
const TWO_DIGIT_CODES: &[&str] = &[
    "20", "27", "30", "31", "32", "33", "34", "36", "39", "40", "41", "43", "44", "45", "46", "47",
    "48", "49", "51", "52", "53", "54", "55", "56", "57", "58", "60", "61", "62", "63", "64", "65",
    "66", "81", "82", "84", "86", "90", "91", "92", "93", "94", "95", "98",
];

/// Fewer digits than this are not a phone number but a fragment of one.
pub const MIN_DIGITS: usize = 4;

/// A phone value split into what is indexed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhoneValue {
    /// Every digit of the number (not of the extension).
    pub digits: String,
    /// Written in international form (`+` or `00` first): its country code.
    pub country_code: Option<String>,
    /// The digits of an extension (`x123`, `ext. 123`, `#123`).
    pub extension: Option<String>,
}

/// Splits a stored or searched value: where a letter, `#`, `,` or `;`
/// follows the number, the rest is an extension.
pub fn parse(value: &str) -> PhoneValue {
    let value = value.trim();
    let cut = value
        .char_indices()
        .find(|&(_, c)| c.is_alphabetic() || matches!(c, '#' | ',' | ';'))
        .map_or(value.len(), |(i, _)| i);
    let (main, rest) = value.split_at(cut);
    let extension: String = rest.chars().filter(char::is_ascii_digit).collect();
    let mut digits: String = main.chars().filter(char::is_ascii_digit).collect();
    let plus = main.trim_start().starts_with('+');
    let international = plus || digits.starts_with("00");
    if !plus && international {
        digits.drain(..2);
    }
    let country_code = international.then(|| country_code(&digits)).flatten();
    PhoneValue {
        digits,
        country_code,
        extension: (!extension.is_empty()).then_some(extension),
    }
}

/// The country calling code `digits` (an international number without its
/// `+`) start with, if they are long enough to hold one and more.
fn country_code(digits: &str) -> Option<String> {
    let len = if ONE_DIGIT_CODES.iter().any(|c| digits.starts_with(c)) {
        1
    } else if TWO_DIGIT_CODES.iter().any(|c| digits.starts_with(c)) {
        2
    } else {
        3
    };
    (digits.len() > len).then(|| digits[..len].to_string())
}

impl PhoneValue {
    /// The number after its country code (international form) or as
    /// written (national form), without a national trunk `0` (`+49 (0)30 …`,
    /// `020 …`), and a North American number without its leading `1`.
    fn national(&self) -> &str {
        let d = self.digits.as_str();
        let n = match &self.country_code {
            Some(cc) => &d[cc.len()..],
            None if self.north_american() && d.len() == 11 => &d[1..],
            None => d,
        };
        n.strip_prefix('0')
            .filter(|n| !n.starts_with('0'))
            .unwrap_or(n)
    }

    /// Whether this is a North American (NANP) number: country code 1 and
    /// ten digits, or written nationally as ten digits (eleven with a
    /// leading 1).
    fn north_american(&self) -> bool {
        let d = &self.digits;
        match &self.country_code {
            Some(cc) => cc == "1" && d.len() == 11,
            None => d.len() == 10 || (d.len() == 11 && d.starts_with('1')),
        }
    }

    /// The ways a search term names a whole number: every digit, and the
    /// national number; with its country code when it has one (a nationally
    /// written number is of no known country, except a North American one).
    fn search_forms(&self) -> Vec<String> {
        let mut out = vec![self.digits.clone()];
        match &self.country_code {
            Some(cc) => out.push(format!("{cc}{}", self.national())),
            None => out.push(self.national().to_string()),
        }
        out.sort();
        out.dedup();
        out
    }

    /// The tokens a stored value is indexed under: every digit; the
    /// national number; with its country code when it has one (a North
    /// American number always has: 1); a North American number's 7-digit
    /// local number; and the extension.
    pub fn tokens(&self) -> Vec<String> {
        if self.digits.len() < MIN_DIGITS {
            return Vec::new();
        }
        let national = self.national().to_string();
        let mut out = vec![self.digits.clone(), national.clone()];
        if let Some(cc) = &self.country_code {
            out.push(format!("{cc}{national}"));
        }
        if self.north_american() {
            out.push(format!("1{national}"));
            out.push(national[national.len().saturating_sub(7)..].to_string());
        }
        out.extend(self.extension.clone());
        out.sort();
        out.dedup();
        out
    }
}

/// Whether the stored phone value `stored` matches the searched `term` (the
/// search term with its escapes removed): one of the term's forms is one of
/// the stored value's tokens. A term's own extension is ignored.
pub fn matches(stored: &str, term: &str) -> bool {
    let wanted = parse(term);
    if wanted.digits.len() < MIN_DIGITS {
        return false;
    }
    let tokens = parse(stored).tokens();
    wanted.search_forms().iter().any(|w| tokens.contains(w))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(stored: &str) -> Vec<String> {
        parse(stored).tokens()
    }

    #[test]
    fn north_american_numbers_are_indexed_whole_and_by_local_number() {
        for stored in [
            "(415) 555-0100",
            "415-555-0100",
            "415.555.0100",
            "4155550100",
            "+1 415-555-0100",
            "+14155550100",
            "1 (415) 555 0100",
            "001 415 555 0100",
        ] {
            let t = tokens(stored);
            assert!(t.contains(&"4155550100".to_string()), "{stored}: {t:?}");
            assert!(t.contains(&"5550100".to_string()), "{stored}: {t:?}");
            for term in [
                "4155550100",
                "(415) 555-0100",
                "+14155550100",
                "+1 415 555 0100",
                "14155550100",
                "555-0100",
            ] {
                assert!(matches(stored, term), "{stored} must match {term}");
            }
            for term in ["4155550101", "2125550100", "0100", "415", "555010"] {
                assert!(!matches(stored, term), "{stored} must not match {term}");
            }
        }
    }

    #[test]
    fn a_uk_number_matches_in_international_and_national_form() {
        assert_eq!(
            tokens("+44 20 7946 0958"),
            vec!["2079460958".to_string(), "442079460958".to_string()]
        );
        assert_eq!(
            tokens("020 7946 0958"),
            vec!["02079460958".to_string(), "2079460958".to_string()]
        );
        let international = ["+44 20 7946 0958", "+442079460958", "0044 20 7946 0958"];
        let national = ["020 7946 0958", "(020) 7946-0958"];
        for stored in international.iter().chain(&national) {
            for term in ["2079460958", "020 7946 0958"] {
                assert!(matches(stored, term), "{stored} must match {term}");
            }
            // Part of the number, or another number ending alike (a US
            // number in Maine, 207).
            for term in ["79460958", "+442079460959", "+12079460958", "0958"] {
                assert!(!matches(stored, term), "{stored} must not match {term}");
            }
        }
        // A nationally written number is of no known country: the E.164
        // form finds only numbers stored with their country code.
        for stored in international {
            assert!(matches(stored, "+442079460958"), "{stored}");
        }
        for stored in national {
            assert!(!matches(stored, "+442079460958"), "{stored}");
        }
    }

    #[test]
    fn a_german_number_matches_in_international_and_national_form() {
        for stored in [
            "+49 30 901820",
            "+49 (0)30 901820",
            "030 901820",
            "030/901820",
        ] {
            for term in ["30901820", "030 901820"] {
                assert!(matches(stored, term), "{stored} must match {term}");
            }
            assert!(!matches(stored, "+4940901820"), "{stored}");
            assert!(!matches(stored, "40901820"), "{stored}");
        }
        assert!(matches("+49 30 901820", "+4930901820"));
        assert!(matches("+49 (0)30 901820", "+4930901820"));
    }

    #[test]
    fn three_digit_country_codes_are_split_off() {
        // Ireland +353: "353" is no one- or two-digit code.
        assert_eq!(
            parse("+353 1 234 5678").country_code.as_deref(),
            Some("353")
        );
        assert!(matches("+353 1 234 5678", "012345678"));
        assert!(matches("+353 1 234 5678", "+35312345678"));
        assert!(matches("01 234 5678", "12345678"));
        assert_eq!(parse("+7 495 123-45-67").country_code.as_deref(), Some("7"));
    }

    #[test]
    fn an_extension_is_a_token_of_its_own_and_not_part_of_the_number() {
        for stored in [
            "(415) 555-0100 x123",
            "(415) 555-0100 ext. 123",
            "+1 415 555 0100 #123",
            "415-555-0100 extension 123",
        ] {
            let v = parse(stored);
            assert_eq!(
                v.digits,
                if stored.starts_with('+') {
                    "14155550100"
                } else {
                    "4155550100"
                }
            );
            assert_eq!(v.extension.as_deref(), Some("123"), "{stored}");
            assert!(matches(stored, "+14155550100"), "{stored}");
            assert!(matches(stored, "(415) 555-0100"), "{stored}");
            assert!(!matches(stored, "4155550100123"), "{stored}");
        }
        // A term's own extension does not hide the number.
        assert!(matches("(415) 555-0100", "415 555 0100 x9"));
    }

    #[test]
    fn fragments_are_not_numbers() {
        assert!(tokens("555").is_empty());
        assert!(tokens("").is_empty());
        assert!(!matches("", "4155550100"));
        assert!(!matches("555", "4155550555"));
        assert!(!matches("(415) 555-0100", "100"));
    }
}
