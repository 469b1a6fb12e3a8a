//! Time as the plugin writes it: calendar dates and datetimes in the forms
//! Salesforce takes (`ActivityDate`, `LastModifiedDate`, SOQL datetime
//! literals) and reads back (`SystemModstamp`), the time of day
//! people read in messages, durations, and the wall clock in milliseconds.
//! Every time the plugin keeps is ms since the Unix epoch, UTC; this is the
//! one place that turns it into text.

const DAY_MS: u64 = 86_400_000;

/// (year, month, day) of a day count since 1970-01-01 (H. Hinnant's
/// civil-from-days).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// `YYYY-MM-DD` (UTC) of a time in ms since the Unix epoch: a Task's
/// `ActivityDate`.
pub fn date(ms: u64) -> String {
    let (y, m, d) = civil((ms / DAY_MS) as i64);
    format!("{y:04}-{m:02}-{d:02}")
}

/// `YYYY-MM-DD` of a time in ms since the Unix epoch on the calendar of a
/// place `offset_minutes` from UTC: a Task's `ActivityDate` on the PBX's
/// day (an evening call in San Francisco is not the next day's).
pub fn local_date(ms: u64, offset_minutes: i32) -> String {
    let shifted = ms as i64 + i64::from(offset_minutes) * 60_000;
    let (y, m, d) = civil(shifted.div_euclid(DAY_MS as i64));
    format!("{y:04}-{m:02}-{d:02}")
}

/// `YYYY-MM-DDTHH:MM:SS.000+0000` as Salesforce writes datetimes.
pub fn datetime(ms: u64) -> String {
    let s = ms / 1000 % 86_400;
    format!(
        "{}T{:02}:{:02}:{:02}.000+0000",
        date(ms),
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// Days since 1970-01-01 of a calendar day (H. Hinnant's days-from-civil).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// ms since the Unix epoch of a datetime as Salesforce writes it
/// (`2024-01-02T03:04:05.000+0000`, also `Z` or `+01:00`, fraction
/// optional); `None` for anything else.
pub fn parse_datetime(text: &str) -> Option<u64> {
    let t = text.trim();
    let num = |range: std::ops::Range<usize>| -> Option<u32> {
        let part = t.get(range)?;
        part.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let b = t.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let mut rest = &t[19..];
    let mut ms = 0u32;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let first3: String = frac[..digits].chars().chain("00".chars()).take(3).collect();
        ms = first3.parse().ok()?;
        rest = &frac[digits..];
    }
    let offset_min: i64 = match rest {
        "Z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let digits: String = rest[1..].chars().filter(|c| *c != ':').collect();
            if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let hh: i64 = digits[..2].parse().ok()?;
            let mm: i64 = digits[2..].parse().ok()?;
            sign * (hh * 60 + mm)
        }
    };
    let days = days_from_civil(i64::from(y), mo, d);
    let secs =
        days * 86_400 + i64::from(h) * 3600 + i64::from(mi) * 60 + i64::from(s) - offset_min * 60;
    let total = secs.checked_mul(1000)?.checked_add(i64::from(ms))?;
    u64::try_from(total).ok()
}

/// A SOQL datetime literal (`2024-01-02T03:04:05Z`, UTC, whole seconds
/// rounded down) of a time in ms since the Unix epoch.
pub fn soql_datetime(ms: u64) -> String {
    let s = ms / 1000 % 86_400;
    format!(
        "{}T{:02}:{:02}:{:02}Z",
        date(ms),
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// "HH:MM:SS UTC" of a time in ms since the Unix epoch.
pub fn clock(ms: u64) -> String {
    let secs = ms / 1000 % 86_400;
    format!(
        "{:02}:{:02}:{:02} UTC",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// A number of seconds as people read it: "42 s", "2 min 5 s", "1 h 0 min 3 s".
pub fn human_duration(s: u64) -> String {
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min {} s", s / 60, s % 60),
        _ => format!("{} h {} min {} s", s / 3600, s / 60 % 60, s % 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_utc_calendar_days() {
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(date(1_768_478_400_000), "2026-01-15");
        assert_eq!(date(951_782_400_000), "2000-02-29");
        assert_eq!(datetime(1_700_000_000_000), "2023-11-14T22:13:20.000+0000");
    }

    #[test]
    fn local_dates_follow_the_offset() {
        // 2026-01-16T04:30Z is 20:30 on the 15th in San Francisco (UTC-8).
        let evening = 1_768_537_800_000;
        assert_eq!(date(evening), "2026-01-16");
        assert_eq!(local_date(evening, -480), "2026-01-15");
        assert_eq!(local_date(evening, 0), "2026-01-16");
        // 23:30Z on the 15th is the 16th in Berlin (UTC+1).
        assert_eq!(local_date(1_768_519_800_000, 60), "2026-01-16");
        assert_eq!(local_date(0, -60), "1969-12-31");
    }

    #[test]
    fn salesforce_datetimes_parse_back() {
        let ms = 1_700_000_000_123;
        assert_eq!(parse_datetime(&datetime(ms)), Some(1_700_000_000_000));
        assert_eq!(
            parse_datetime("2023-11-14T22:13:20.123Z"),
            Some(1_700_000_000_123)
        );
        assert_eq!(
            parse_datetime("2023-11-14T23:13:20+01:00"),
            Some(1_700_000_000_000)
        );
        assert_eq!(
            parse_datetime("2000-02-29T00:00:00.000+0000"),
            Some(951_782_400_000)
        );
        for bad in [
            "",
            "2023-11-14",
            "2023-13-14T22:13:20Z",
            "2023-11-14T22:13:20",
            "x023-11-14T22:13:20Z",
        ] {
            assert_eq!(parse_datetime(bad), None, "{bad}");
        }
        assert_eq!(soql_datetime(1_700_000_000_999), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn clock_shows_utc_time_of_day() {
        assert_eq!(clock(0), "00:00:00 UTC");
        assert_eq!(clock(1_700_000_000_000), "22:13:20 UTC");
    }
}
