//! The OAuth callback's raw query, as the host hands it to the plugin:
//! `connection::Callback::parse` (state, code, error, error_description,
//! percent-decoding, a leading `?`, repeats) and what `complete` does with
//! its pieces before anything is looked up (`oauth::plausible_state` gates
//! the state that becomes part of a store key, `http::sanitize` the error
//! text that reaches a message). Properties, not only "no panic": what is
//! parsed round-trips through a query built from it, the first of a
//! repeated parameter wins, and sanitized text is one bounded line.

#![no_main]

use libfuzzer_sys::fuzz_target;
use salesforce_plugin::connection::Callback;
use salesforce_plugin::http::sanitize;
use salesforce_plugin::oauth::plausible_state;
use url::form_urlencoded::Serializer;

type Fields = [Option<String>; 4];

fn fields(c: Callback) -> Fields {
    [c.code, c.state, c.error, c.error_description]
}

const NAMES: [&str; 4] = ["code", "state", "error", "error_description"];

/// A query carrying `fields` (present ones only), percent-encoded.
fn query(fields: &Fields) -> String {
    let mut s = Serializer::new(String::new());
    for (name, value) in NAMES.iter().zip(fields) {
        if let Some(value) = value {
            s.append_pair(name, value);
        }
    }
    s.finish()
}

fn check_sanitized(text: &str) {
    let clean = sanitize(text);
    assert!(!clean.chars().any(char::is_control), "{clean:?}");
    assert!(!clean.contains("  "), "{clean:?}");
    assert_eq!(clean.trim(), clean, "{clean:?}");
    assert!(clean.chars().count() <= 201, "{clean:?}");
}

fuzz_target!(|data: &[u8]| {
    let raw = String::from_utf8_lossy(data);
    let parsed = fields(Callback::parse(&raw));

    // A leading `?` is tolerated: the same parameters with or without it.
    if !raw.starts_with('?') {
        assert_eq!(fields(Callback::parse(&format!("?{raw}"))), parsed);
    }
    // What was parsed round-trips through a query built from it.
    assert_eq!(fields(Callback::parse(&query(&parsed))), parsed);
    // The first of a repeated parameter wins.
    for (i, name) in NAMES.iter().enumerate() {
        let more = fields(Callback::parse(&format!("{raw}&{name}=later")));
        let mut expected = parsed.clone();
        expected[i].get_or_insert_with(|| "later".to_string());
        assert_eq!(more, expected, "{name}");
    }

    // The raw text, cut in four, as arbitrary values: any value survives
    // percent-encoding and decoding unchanged.
    let mut parts = raw.splitn(4, '\n').map(str::to_string);
    let values: Fields = std::array::from_fn(|_| parts.next());
    assert_eq!(fields(Callback::parse(&query(&values))), values);

    // Only a plausible state becomes part of a store key: bounded base64url.
    for state in parsed[1].iter().chain(values[1].iter()) {
        if plausible_state(state) {
            assert!((16..=128).contains(&state.len()));
            assert!(
                state
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            );
        }
    }
    // Error text reaches messages and logs only sanitized.
    for text in parsed.iter().chain(values.iter()).flatten() {
        check_sanitized(text);
    }
});
