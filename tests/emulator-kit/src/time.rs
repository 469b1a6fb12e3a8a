//! Date and date-time text in Salesforce's form (`2025-01-31T12:00:00.000+0000`;
//! HubSpot's `...Z` form is this with the offset swapped), without a calendar
//! crate: civil-from-days and days-from-civil (H. Hinnant).

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Formats epoch milliseconds the way the REST API writes datetimes.
pub fn format_datetime(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let rem = ms.rem_euclid(86_400_000);
    let (y, m, d) = civil_from_days(days);
    let (h, min, s, milli) = (
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000,
    );
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{min:02}:{s:02}.{milli:03}+0000")
}

/// Whether `s` has [`format_datetime`]'s form: such date-times order as
/// text exactly as in time (fixed widths, one offset).
pub fn is_canonical(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 28
        && s.ends_with("+0000")
        && b[..23].iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'.',
            _ => c.is_ascii_digit(),
        })
}

/// Formats epoch milliseconds as a date (`YYYY-MM-DD`).
pub fn format_date(ms: i64) -> String {
    let (y, m, d) = civil_from_days(ms.div_euclid(86_400_000));
    format!("{y:04}-{m:02}-{d:02}")
}

fn num(s: &str) -> Option<i64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Parses `YYYY-MM-DD` into epoch milliseconds at midnight UTC.
pub fn parse_date(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let (y, m, d) = (num(&s[..4])?, num(&s[5..7])?, num(&s[8..10])?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    Some(days_from_civil(y, m, d) * 86_400_000)
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.fff](Z|+HHMM|+HH:MM)` into epoch milliseconds.
pub fn parse_datetime(s: &str) -> Option<i64> {
    if s.len() < 20 || s.as_bytes().get(10) != Some(&b'T') {
        return None;
    }
    let date = parse_date(&s[..10])?;
    let t = &s[11..];
    let tb = t.as_bytes();
    if tb.len() < 8 || tb[2] != b':' || tb[5] != b':' {
        return None;
    }
    let (h, mi, se) = (num(&t[..2])?, num(&t[3..5])?, num(&t[6..8])?);
    if h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let mut rest = &t[8..];
    let mut millis = 0;
    // Without allocating: a query's filter parses this for every record.
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return None;
        }
        let kept = n.min(3);
        millis = num(&frac[..kept])? * 10_i64.pow(3 - kept as u32);
        rest = &frac[n..];
    }
    let offset_ms = match rest {
        "Z" => 0,
        _ => {
            let sign = match rest.as_bytes().first() {
                Some(b'+') => 1,
                Some(b'-') => -1,
                _ => return None,
            };
            let (hh, mm) = match rest.len() {
                5 => (&rest[1..3], &rest[3..5]),
                6 if rest.as_bytes()[3] == b':' => (&rest[1..3], &rest[4..6]),
                _ => return None,
            };
            sign * (num(hh)? * 3_600_000 + num(mm)? * 60_000)
        }
    };
    Some(date + h * 3_600_000 + mi * 60_000 + se * 1000 + millis - offset_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let ms = parse_datetime("2025-03-01T12:34:56.789Z").unwrap();
        assert_eq!(format_datetime(ms), "2025-03-01T12:34:56.789+0000");
        assert_eq!(parse_datetime("2025-03-01T12:34:56.789+0000"), Some(ms));
        assert_eq!(parse_datetime("2025-03-01T14:34:56.789+02:00"), Some(ms));
        assert_eq!(format_date(ms), "2025-03-01");
        assert_eq!(parse_datetime("2025-03-01T07:34:56.789-0500"), Some(ms));
        assert_eq!(parse_datetime("2025-03-01T12:34:56.7891234Z"), Some(ms));
        assert_eq!(parse_datetime("2025-03-01T12:34:56.7Z"), Some(ms - 89));
        assert_eq!(parse_datetime("2025-03-01T12:34:56Z"), Some(ms - 789));
        assert_eq!(parse_date("1970-01-02"), Some(86_400_000));
        assert_eq!(
            parse_datetime("2024-02-29T00:00:00Z")
                .map(format_date)
                .as_deref(),
            Some("2024-02-29")
        );
    }

    #[test]
    fn canonical_date_times_order_as_text_as_in_time() {
        let times = [
            0,
            999,
            1_000,
            86_399_999,
            1_700_000_000_000,
            1_700_000_000_001,
        ];
        for pair in times.windows(2) {
            let (a, b) = (format_datetime(pair[0]), format_datetime(pair[1]));
            assert!(is_canonical(&a) && is_canonical(&b), "{a} {b}");
            assert!(a < b, "{a} {b}");
        }
        for other in [
            "2025-03-01T12:34:56.789Z",
            "2025-03-01T12:34:56.789+0100",
            "2025-03-01T12:34:56+0000",
            "2025-03-01 12:34:56.789+0000",
            "2025-03-0xT12:34:56.789+0000",
        ] {
            assert!(!is_canonical(other), "{other}");
        }
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "",
            "2025-13-01",
            "2025-01-01T25:00:00Z",
            "2025-01-01T00:00:00",
            "x025-01-01T00:00:00Z",
            "2025-01-01T00:00:00.Z",
            "2025-01-01T00:00:00+02",
            "2025-01-01T00:00:00+02-00",
            "2025-01-01T00:00:00+0a00",
        ] {
            assert!(
                parse_datetime(bad).is_none() && (bad.len() != 10 || parse_date(bad).is_none()),
                "{bad}"
            );
        }
    }
}
