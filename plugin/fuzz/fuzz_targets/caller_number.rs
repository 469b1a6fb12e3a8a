//! Phone number normalization must never panic, whatever the PBX sends:
//! arbitrary text as the number, arbitrary text as the default region.

#![no_main]

use libfuzzer_sys::fuzz_target;
use salesforce_plugin::phone::normalize;

fuzz_target!(|data: &[u8]| {
    // The first byte splits the input into a region and a number, so both
    // get arbitrary text, valid regions included.
    let (region, number) = match data.split_first() {
        Some((&n, rest)) => rest.split_at((n as usize % 4).min(rest.len())),
        None => (&[][..], data),
    };
    let region = String::from_utf8_lossy(region);
    let number = String::from_utf8_lossy(number);
    for region in [region.as_ref(), "US", "GB", "DE", ""] {
        if let Ok(n) = normalize(&number, region) {
            // What comes out is E.164 and normalizes to itself.
            assert!(n.e164.starts_with('+'));
            assert!(n.e164.len() <= 16);
            assert!(n.e164[1..].bytes().all(|b| b.is_ascii_digit()));
            let again = normalize(&n.e164, "");
            assert_eq!(again.map(|a| a.e164).ok().as_deref(), Some(n.e164.as_str()));
        }
    }
});
