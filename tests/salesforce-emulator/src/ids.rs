//! Salesforce record ids: 15-character case-sensitive ids and their
//! 18-character case-insensitive form with the 3-character checksum suffix.

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const SUFFIX: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";

/// Key prefixes of the objects the emulator knows.
pub mod prefix {
    pub const USER: &str = "005";
    pub const CONTACT: &str = "003";
    pub const LEAD: &str = "00Q";
    pub const ACCOUNT: &str = "001";
    pub const TASK: &str = "00T";
    pub const CASE: &str = "500";
    pub const ORG: &str = "00D";
    pub const QUERY_LOCATOR: &str = "01g";
}

/// The 3-character suffix that makes a 15-character id case-insensitive.
fn checksum(id15: &[u8]) -> [u8; 3] {
    let mut out = [0u8; 3];
    for (chunk_index, chunk) in id15.chunks(5).take(3).enumerate() {
        let mut bits = 0usize;
        for (i, c) in chunk.iter().enumerate() {
            if c.is_ascii_uppercase() {
                bits |= 1 << i;
            }
        }
        out[chunk_index] = SUFFIX[bits];
    }
    out
}

/// Builds the `n`-th id with a key prefix: `prefix` + instance `5g` +
/// zero padding + base-62 counter, plus the checksum. Deterministic.
pub fn make_id(prefix: &str, n: u64) -> String {
    let mut counter = [b'0'; 10];
    let mut v = n;
    for slot in counter.iter_mut().rev() {
        *slot = BASE62[(v % 62) as usize];
        v /= 62;
    }
    let mut id = String::with_capacity(18);
    id.push_str(prefix);
    id.push_str("5g");
    // 3 + 2 + 10 = 15 characters.
    id.push_str(std::str::from_utf8(&counter).unwrap_or("0000000000"));
    let sum = checksum(id.as_bytes());
    id.extend(sum.iter().map(|&b| b as char));
    id
}

/// Normalizes a 15- or 18-character id to its 18-character form.
/// Returns `None` when the text is not shaped like a Salesforce id
/// (wrong length, non-alphanumeric characters, or a wrong checksum).
pub fn normalize(id: &str) -> Option<String> {
    let b = id.as_bytes();
    if !(b.len() == 15 || b.len() == 18) || !b.iter().all(u8::is_ascii_alphanumeric) {
        return None;
    }
    let sum = checksum(&b[..15]);
    if b.len() == 18 && !b[15..].eq_ignore_ascii_case(&sum) {
        return None;
    }
    let mut out = String::with_capacity(18);
    out.push_str(&id[..15]);
    out.extend(sum.iter().map(|&c| c as char));
    Some(out)
}

/// The key prefix (first three characters) of a well-formed id.
pub fn key_prefix(id: &str) -> &str {
    id.get(..3).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_18_chars_with_valid_checksum() {
        let id = make_id(prefix::USER, 1);
        assert_eq!(id.len(), 18);
        assert!(id.starts_with("005"));
        assert_eq!(normalize(&id).as_deref(), Some(id.as_str()));
        assert_eq!(normalize(&id[..15]).as_deref(), Some(id.as_str()));
        assert_ne!(make_id(prefix::USER, 2), id);
        assert_eq!(make_id(prefix::USER, 1), id, "deterministic");
    }

    #[test]
    fn known_checksum() {
        // A documented example: 001A0000006Vm9r -> 001A0000006Vm9rIAC.
        assert_eq!(
            normalize("001A0000006Vm9r").as_deref(),
            Some("001A0000006Vm9rIAC")
        );
        assert_eq!(
            normalize("001A0000006Vm9rIAC").as_deref(),
            Some("001A0000006Vm9rIAC")
        );
        assert!(normalize("001A0000006Vm9rAAA").is_none());
    }

    #[test]
    fn malformed_ids_are_rejected() {
        for bad in ["", "abc", "001A0000006Vm9r-AC", "001A0000006Vm9"] {
            assert!(normalize(bad).is_none(), "{bad}");
        }
    }
}
