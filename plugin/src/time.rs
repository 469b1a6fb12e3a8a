//! Time as the plugin writes it: calendar dates and datetimes in the forms
//! Salesforce takes (`ActivityDate`, `LastModifiedDate`), the time of day
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

/// The wall clock in ms since the Unix epoch (0 for a clock before it).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
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
    fn clock_shows_utc_time_of_day() {
        assert_eq!(clock(0), "00:00:00 UTC");
        assert_eq!(clock(1_700_000_000_000), "22:13:20 UTC");
    }
}
