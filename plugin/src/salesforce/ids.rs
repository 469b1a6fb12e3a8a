//! Salesforce record ids as people type them: the 15-character,
//! case-sensitive form (what Salesforce's pages and reports show) and the
//! 18-character form (what the API answers), which adds a 3-character
//! checksum of the first 15 characters' case. Every id typed into the PBX is
//! normalized here to the 18-character form, so comparisons are exact.

use crate::error::PluginError;

/// The checksum alphabet: a 5-bit value per character.
const SUFFIX: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";

/// The 3 checksum characters of a 15-character id: for each block of 5
/// characters, bit `i` is set when character `i` is an upper-case letter
/// (Salesforce's documented algorithm).
fn checksum(id15: &[u8]) -> [u8; 3] {
    let mut out = [0u8; 3];
    for (slot, block) in out.iter_mut().zip(id15.chunks(5)) {
        let bits = block
            .iter()
            .enumerate()
            .filter(|(_, c)| c.is_ascii_uppercase())
            .fold(0usize, |bits, (i, _)| bits | 1 << i);
        *slot = SUFFIX[bits];
    }
    out
}

/// `text` (trimmed) as an 18-character Salesforce id. A 15-character id
/// gets its checksum; an 18-character one keeps its first 15 characters
/// and must carry their checksum (in any case). `what` names the id in the
/// error ("user id"), which says what was wrong and how to fix it.
pub fn normalize(text: &str, what: &str) -> Result<String, PluginError> {
    let id = text.trim();
    let bytes = id.as_bytes();
    let shown = crate::http::sanitize(id);
    if !(bytes.len() == 15 || bytes.len() == 18) || !bytes.iter().all(u8::is_ascii_alphanumeric) {
        return Err(PluginError::InvalidInput(format!(
            "{shown:?} is not a Salesforce {what}: an id is 15 or 18 letters and digits (e.g. 005xx000001Sv6A or 005xx000001Sv6AAAK); copy it from the user's page in Salesforce or from `crm users list`"
        )));
    }
    let sum = checksum(&bytes[..15]);
    if bytes.len() == 18 && !bytes[15..].eq_ignore_ascii_case(&sum) {
        let fixed = format!("{}{}", &id[..15], String::from_utf8_lossy(&sum));
        return Err(PluginError::InvalidInput(format!(
            "{shown:?} is not a valid Salesforce {what}: its last 3 characters do not match the case of the first 15 (for {} they would be {}, giving {fixed}); copy the whole id again, or type only its first 15 characters exactly as Salesforce shows them",
            &id[..15],
            String::from_utf8_lossy(&sum),
        )));
    }
    let mut out = String::with_capacity(18);
    out.push_str(&id[..15]);
    out.extend(sum.iter().map(|&c| char::from(c)));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifteen_character_ids_get_salesforces_checksum() {
        // Salesforce's documented example.
        assert_eq!(
            normalize("001A0000006Vm9r", "record id").ok().as_deref(),
            Some("001A0000006Vm9rIAC")
        );
        assert_eq!(
            normalize(" 001A0000006Vm9rIAC ", "record id")
                .ok()
                .as_deref(),
            Some("001A0000006Vm9rIAC")
        );
        // The checksum is case-insensitive; the id part is not.
        assert_eq!(
            normalize("001A0000006Vm9riac", "record id").ok().as_deref(),
            Some("001A0000006Vm9rIAC")
        );
        assert_eq!(
            normalize("001a0000006vm9r", "record id").ok().as_deref(),
            Some("001a0000006vm9rAAA")
        );
        assert_eq!(
            normalize("005000000000001", "user id").ok().as_deref(),
            Some("005000000000001AAA")
        );
        // All upper case: every bit set.
        assert_eq!(
            normalize("ABCDEABCDEABCDE", "user id").ok().as_deref(),
            Some("ABCDEABCDEABCDE555")
        );
    }

    #[test]
    fn malformed_ids_are_refused_naming_the_fix() {
        for bad in [
            "",
            "005",
            "005-0000000001A",
            "005A0000006Vm9rIA",
            "005ä000000001",
        ] {
            let e = normalize(bad, "user id");
            assert!(
                matches!(&e, Err(PluginError::InvalidInput(m)) if m.contains("15 or 18 letters and digits")),
                "{bad}: {e:?}"
            );
        }
        let e = normalize("001A0000006Vm9rAAA", "user id");
        assert!(
            matches!(&e, Err(PluginError::InvalidInput(m))
                if m.contains("do not match") && m.contains("001A0000006Vm9rIAC")),
            "{e:?}"
        );
    }
}
