//! Builds the plugin's phone-number metadata at compile time: every
//! territory of the `phonenumber` crate's database (libphonenumber's), as
//! compact static data the plugin turns into parsers lazily, per calling
//! code (`src/phone/metadata.rs`). The shipped plugin then carries no
//! parsed database in its memory image, and its file stays small.
//!
//! Writes two files to `OUT_DIR`:
//! - `phone_metadata.bin`: each territory's metadata, postcard-encoded
//!   (`phonenumber::metadata::loader::Metadata`, the crate's own input form);
//! - `phone_metadata.rs`: `TERRITORIES`, one entry per territory (id,
//!   calling code, byte range in the blob), ordered by calling code and,
//!   within a code, in the crate's order (the code's main territory first),
//!   which is the order its parser tries them in.

use std::fmt::Write as _;
use std::path::PathBuf;

use phonenumber::metadata::{DATABASE, Descriptor, Format, Metadata, loader};

fn main() {
    // Only the `phonenumber` version (Cargo.lock) changes the output.
    println!("cargo::rerun-if-changed=build.rs");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));

    // By code, not `DATABASE.iter()`: that walks territories by id, and the
    // non-geographic codes (+800, +808, ...) share the id "001".
    let codes: Vec<u16> = (1..1000)
        .filter(|c| DATABASE.by_code(c).is_some())
        .collect();
    check_prefix_free(&codes);

    let mut blob = Vec::new();
    let mut table = String::from(
        "/// Every territory, by calling code, the code's main territory first;\n\
         /// `start..end` is its postcard-encoded `loader::Metadata` in `METADATA`.\n\
         static TERRITORIES: &[Territory] = &[\n",
    );
    for code in &codes {
        let group = DATABASE.by_code(code).unwrap_or_default();
        assert!(
            group.iter().skip(1).all(|m| !m.is_main_country_for_code()),
            "calling code {code}: only its first territory may be the main one"
        );
        for meta in group {
            let bytes = postcard::to_allocvec(&to_loader(meta)).expect("postcard encodes");
            let start = blob.len();
            blob.extend_from_slice(&bytes);
            writeln!(
                table,
                "    Territory {{ id: {:?}, code: {code}, start: {start}, end: {} }},",
                meta.id(),
                blob.len()
            )
            .expect("writing to a String");
        }
    }
    table.push_str("];\n");
    std::fs::write(out.join("phone_metadata.bin"), &blob).expect("writing phone_metadata.bin");
    std::fs::write(out.join("phone_metadata.rs"), table).expect("writing phone_metadata.rs");
}

/// The lazy parsers rest on this: a number's digits start with at most one
/// calling code, so a parser holding only that code's territories reads it
/// as the whole database does.
fn check_prefix_free(codes: &[u16]) {
    for a in codes {
        for b in codes {
            let (a, b) = (a.to_string(), b.to_string());
            assert!(
                a == b || !b.starts_with(&a),
                "calling code {a} is a prefix of {b}: src/phone/metadata.rs assumes none is"
            );
        }
    }
}

/// The crate's input form of one territory, read back through its public
/// accessors. Regular expressions lose their white space: the crate
/// compiles every one of them with white space ignored (`x` flag), and the
/// indentation of the XML they come from is over half of the bytes.
fn to_loader(meta: &Metadata) -> loader::Metadata {
    let d = meta.descriptors();
    loader::Metadata {
        general: Some(descriptor(d.general())),
        fixed_line: d.fixed_line().map(descriptor),
        mobile: d.mobile().map(descriptor),
        toll_free: d.toll_free().map(descriptor),
        premium_rate: d.premium_rate().map(descriptor),
        shared_cost: d.shared_cost().map(descriptor),
        personal_number: d.personal_number().map(descriptor),
        voip: d.voip().map(descriptor),
        pager: d.pager().map(descriptor),
        uan: d.uan().map(descriptor),
        emergency: d.emergency().map(descriptor),
        voicemail: d.voicemail().map(descriptor),
        short_code: d.short_code().map(descriptor),
        standard_rate: d.standard_rate().map(descriptor),
        carrier: d.carrier().map(descriptor),
        no_international: d.no_international().map(descriptor),
        id: Some(meta.id().to_owned()),
        country_code: Some(meta.country_code()),
        international_prefix: meta.international_prefix().map(|r| regex(r.as_str())),
        preferred_international_prefix: meta.preferred_international_prefix().map(str::to_owned),
        national_prefix: meta.national_prefix().map(str::to_owned),
        preferred_extension_prefix: meta.preferred_extension_prefix().map(str::to_owned),
        national_prefix_for_parsing: meta
            .national_prefix_for_parsing()
            .map(|r| regex(r.as_str())),
        national_prefix_transform_rule: meta.national_prefix_transform_rule().map(str::to_owned),
        formats: meta.formats().iter().map(format).collect(),
        international_formats: meta.international_formats().iter().map(format).collect(),
        main_country_for_code: meta.is_main_country_for_code(),
        leading_digits: meta.leading_digits().map(|r| regex(r.as_str())),
        mobile_number_portable: meta.is_mobile_number_portable(),
        defaults: loader::Defaults::default(),
    }
}

fn descriptor(d: &Descriptor) -> loader::Descriptor {
    loader::Descriptor {
        national_number: Some(regex(d.national_number().as_str())),
        possible_length: d.possible_length().to_vec(),
        possible_local_length: d.possible_local_length().to_vec(),
        example: d.example().map(str::to_owned),
    }
}

fn format(f: &Format) -> loader::Format {
    loader::Format {
        pattern: Some(regex(f.pattern().as_str())),
        format: Some(f.format().to_owned()),
        leading_digits: f
            .leading_digits()
            .iter()
            .map(|r| regex(r.as_str()))
            .collect(),
        national_prefix_formatting_rule: f.national_prefix().map(str::to_owned),
        national_prefix_optional_when_formatting: f.is_national_prefix_optional(),
        domestic_carrier: f.domestic_carrier().map(str::to_owned),
    }
}

/// A pattern without its white space, which means the same with the `x`
/// flag as long as no white space is escaped and no `#` starts a comment.
fn regex(pattern: &str) -> String {
    let escaped_space = pattern
        .as_bytes()
        .windows(2)
        .any(|w| w[0] == b'\\' && w[1].is_ascii_whitespace());
    assert!(
        !pattern.contains('#') && !escaped_space,
        "pattern {pattern:?} has a comment or escaped white space; keep it as it is"
    );
    pattern.split_whitespace().collect()
}
