//! Calendar arithmetic (UTC), for tests of journeys that work in dates (renewal, birthday).

use crate::DAY_MS;

/// The UTC calendar date `(year, month, day)` of a timestamp in milliseconds.
pub fn utc_date(at_ms: i64) -> (i64, u32, u32) {
    // Howard Hinnant's civil_from_days.
    let z = at_ms.div_euclid(DAY_MS) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Midnight UTC at the start of `year-month-day`, in milliseconds.
pub fn utc_midnight(year: i64, month: u32, day: u32) -> i64 {
    // Howard Hinnant's days_from_civil.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe - 719_468) * DAY_MS
}

/// `YYYY-MM-DD` of a timestamp, in UTC.
pub fn utc_date_string(at_ms: i64) -> String {
    let (y, m, d) = utc_date(at_ms);
    format!("{y:04}-{m:02}-{d:02}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::HOUR_MS;

    #[test]
    fn utc_calendar_helpers_agree_with_known_dates() {
        assert_eq!(utc_date(0), (1970, 1, 1));
        assert_eq!(utc_midnight(1970, 1, 1), 0);
        // 2026-03-01T00:00:00Z, and the leap day before 2028-03-01.
        assert_eq!(utc_midnight(2026, 3, 1), 1_772_323_200_000);
        assert_eq!(utc_date(1_772_323_200_000 - 1), (2026, 2, 28));
        assert_eq!(utc_date(utc_midnight(2028, 3, 1) - 1), (2028, 2, 29));
        assert_eq!(
            utc_date_string(utc_midnight(1969, 12, 31) + HOUR_MS),
            "1969-12-31"
        );
        for day in (-800..800).map(|d| d * 37) {
            let at = day * DAY_MS;
            let (y, m, d) = utc_date(at);
            assert_eq!(utc_midnight(y, m, d), at);
        }
    }
}
