//! Caller numbers: whatever the PBX sends as the number and as its default
//! region goes through `phone::normalize`, the function the caller lookup
//! (`calls::lookup`) uses. It must never panic; a number it accepts is
//! E.164 that normalizes to itself, and one it refuses is explained in a
//! single printable line (the lookup logs it).

#![no_main]

use libfuzzer_sys::fuzz_target;
use salesforce_plugin::phone::normalize;

fuzz_target!(|data: &[u8]| {
    // The first byte splits the input into a region and a number, so both
    // get arbitrary text, valid regions included; its high bits pick a
    // fixed region instead (one normalization per run keeps runs fast).
    let (first, region, number) = match data.split_first() {
        Some((&n, rest)) => {
            let (region, number) = rest.split_at((n as usize % 4).min(rest.len()));
            (n, region, number)
        }
        None => (0, &[][..], data),
    };
    let own = String::from_utf8_lossy(region);
    let number = String::from_utf8_lossy(number);
    let region = match first >> 5 {
        1 => "US",
        2 => "GB",
        3 => "DE",
        4 => "",
        _ => own.as_ref(),
    };
    {
        match normalize(&number, region) {
            Ok(n) => {
                // E.164: a plus and at most 15 digits, ending in the
                // national significant number, normalizing to itself.
                assert!(n.e164.starts_with('+'), "{n:?}");
                assert!(n.e164.len() <= 16, "{n:?}");
                assert!(n.e164[1..].bytes().all(|b| b.is_ascii_digit()), "{n:?}");
                assert!(!n.national.is_empty(), "{n:?}");
                assert!(n.national.bytes().all(|b| b.is_ascii_digit()), "{n:?}");
                assert!(n.e164.ends_with(&n.national), "{n:?}");
                assert!(n.international.starts_with('+'), "{n:?}");
                let digits: String = n
                    .international
                    .chars()
                    .filter(char::is_ascii_digit)
                    .collect();
                assert_eq!(digits, n.e164[1..], "{n:?}");
                let again = normalize(&n.e164, "");
                assert_eq!(again.map(|a| a.e164).ok().as_deref(), Some(n.e164.as_str()));
            }
            Err(bad) => {
                let said = bad.describe(&number);
                assert!(!said.chars().any(char::is_control), "{said:?}");
                assert!(said.chars().count() < 400, "{said:?}");
            }
        }
    }
});
