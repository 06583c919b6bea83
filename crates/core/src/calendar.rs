//! UTC calendar dates from Unix milliseconds, without a date crate: what reports, datasets
//! and the CLI print.

/// `ms` since the Unix epoch as `YYYY-MM-DD HH:MM:SS` (UTC).
pub fn utc_datetime(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let rem = secs.rem_euclid(86_400);
    format!(
        "{} {:02}:{:02}:{:02}",
        utc_date(ms),
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60
    )
}

/// `ms` since the Unix epoch as `YYYY-MM-DD` (UTC).
pub fn utc_date(ms: i64) -> String {
    let days = ms.div_euclid(1000).div_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

const DAY_MS: i64 = 86_400_000;

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm), for any valid date.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `YYYY-MM-DD` as the Unix milliseconds of its first instant (UTC); `None` unless it is a
/// real date of that form.
pub fn parse_date(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    let shape = bytes.len() == 10
        && bytes.iter().enumerate().all(|(i, b)| match i {
            4 | 7 => *b == b'-',
            _ => b.is_ascii_digit(),
        });
    if !shape {
        return None;
    }
    let year: i64 = text[..4].parse().ok()?;
    let month: u32 = text[5..7].parse().ok()?;
    let day: u32 = text[8..10].parse().ok()?;
    let ms = days_from_civil(year, month, day) * DAY_MS;
    // A day past the month's end (2026-02-30) comes back as another date.
    (utc_date(ms) == text).then_some(ms)
}

/// The ISO 8601 week of `ms` as `YYYY-Www` (weeks start on Monday; week 1 holds the year's
/// first Thursday).
pub fn iso_week(ms: i64) -> String {
    let days = ms.div_euclid(DAY_MS);
    // 1970-01-01 was a Thursday: weekday 0 = Monday.
    let weekday = (days + 3).rem_euclid(7);
    let thursday = days - weekday + 3;
    let year: i64 = utc_date(thursday * DAY_MS)[..4].parse().unwrap_or(1970);
    let week = (thursday - days_from_civil(year, 1, 1)) / 7 + 1;
    format!("{year:04}-W{week:02}")
}

/// `YYYY-Www` as the Unix milliseconds of that week's Monday 00:00 UTC.
pub fn parse_iso_week(text: &str) -> Option<i64> {
    let (year, week) = text.split_once("-W")?;
    if year.len() != 4 || week.len() != 2 {
        return None;
    }
    let year: i64 = year.parse().ok()?;
    let week: i64 = week.parse().ok()?;
    // The Monday of week 1 is the Monday on or before January 4th.
    let jan4 = days_from_civil(year, 1, 4);
    let monday = jan4 - (jan4 + 3).rem_euclid(7) + (week - 1) * 7;
    let ms = monday * DAY_MS;
    (week >= 1 && iso_week(ms) == text).then_some(ms)
}

#[cfg(test)]
mod tests {
    #[test]
    fn dates_and_iso_weeks() {
        assert_eq!(super::parse_date("1970-01-01"), Some(0));
        assert_eq!(super::parse_date("2000-02-29"), Some(951_782_400_000));
        assert_eq!(super::parse_date("2026-02-29"), None);
        assert_eq!(super::parse_date("2026-1-01"), None);
        let dec3 = super::parse_date("2026-12-03").unwrap();
        assert_eq!(super::iso_week(dec3), "2026-W49");
        // Week 1 of 2026 starts on Monday 2025-12-29; 2027-01-03 is still in 2026-W53.
        assert_eq!(
            super::iso_week(super::parse_date("2025-12-29").unwrap()),
            "2026-W01"
        );
        assert_eq!(
            super::iso_week(super::parse_date("2027-01-03").unwrap()),
            "2026-W53"
        );
        assert_eq!(
            super::iso_week(super::parse_date("2027-01-04").unwrap()),
            "2027-W01"
        );
        assert_eq!(
            super::parse_iso_week("2026-W49"),
            super::parse_date("2026-11-30")
        );
        assert_eq!(super::parse_iso_week("2025-W53"), None, "2025 has 52 weeks");
        assert_eq!(super::parse_iso_week("2026-49"), None);
    }

    #[test]
    fn times_are_utc_calendar_dates() {
        assert_eq!(super::utc_datetime(0), "1970-01-01 00:00:00");
        assert_eq!(super::utc_datetime(951_782_400_000), "2000-02-29 00:00:00");
        assert_eq!(
            super::utc_datetime(1_795_000_000_123),
            "2026-11-18 11:06:40"
        );
        assert_eq!(super::utc_date(-1), "1969-12-31");
    }
}
