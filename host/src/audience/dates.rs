//! When a `date` audience trigger enters a customer: `offset_days` after (negative: before)
//! the calendar date in an attribute, at `at_minute` after local midnight in the customer's
//! time zone (attribute `timezone`, as for quiet hours: `policy::zone_of`).

use crate::model::Millis;
use chrono::{DateTime, Days, NaiveDate, NaiveTime, TimeZone};
use chrono_tz::Tz;

/// The calendar date an attribute names, in `zone`: a `YYYY-MM-DD` date as written; a
/// date-time (RFC 3339, or milliseconds since the epoch) as the day it falls on in `zone`.
pub fn local_date(value: &serde_json::Value, zone: Tz) -> Option<NaiveDate> {
    let instant = match value {
        serde_json::Value::String(s) => {
            if let Ok(date) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
                return Some(date);
            }
            DateTime::parse_from_rfc3339(s).ok()?.timestamp_millis()
        }
        serde_json::Value::Number(n) => n.as_i64()?,
        _ => return None,
    };
    Some(zone.timestamp_millis_opt(instant).single()?.date_naive())
}

/// The instant a date trigger enters for `value`, or `None` when `value` is no date. A local
/// time that a daylight-saving change skips moves an hour later; one it repeats is the first.
pub fn entry_at(
    value: &serde_json::Value,
    zone: Tz,
    offset_days: i32,
    at_minute: u16,
) -> Option<Millis> {
    let date = local_date(value, zone)?;
    let shifted = if offset_days >= 0 {
        date.checked_add_days(Days::new(u64::from(offset_days.unsigned_abs())))?
    } else {
        date.checked_sub_days(Days::new(u64::from(offset_days.unsigned_abs())))?
    };
    let time = NaiveTime::from_hms_opt(u32::from(at_minute / 60), u32::from(at_minute % 60), 0)?;
    let local = shifted.and_time(time);
    let at = zone.from_local_datetime(&local).earliest().or_else(|| {
        zone.from_local_datetime(&(local + chrono::Duration::hours(1)))
            .earliest()
    })?;
    Some(at.timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn utc(s: &str) -> Millis {
        DateTime::parse_from_rfc3339(s).unwrap().timestamp_millis()
    }

    #[test]
    fn seven_days_before_a_renewal_at_nine_in_the_morning_local_time() {
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        let at = entry_at(&json!("2026-06-15"), berlin, -7, 9 * 60).unwrap();
        assert_eq!(at, utc("2026-06-08T07:00:00Z"), "09:00 CEST is 07:00 UTC");
        let ny: Tz = "America/New_York".parse().unwrap();
        let at = entry_at(&json!("2026-01-10"), ny, 3, 30).unwrap();
        assert_eq!(at, utc("2026-01-13T05:30:00Z"), "00:30 EST is 05:30 UTC");
    }

    #[test]
    fn a_date_time_counts_as_the_day_it_falls_on_locally() {
        let tokyo: Tz = "Asia/Tokyo".parse().unwrap();
        // 20:00 UTC on the 1st is already the 2nd in Tokyo.
        let v = json!("2026-03-01T20:00:00Z");
        assert_eq!(local_date(&v, tokyo), NaiveDate::from_ymd_opt(2026, 3, 2));
        let ms = json!(utc("2026-03-01T20:00:00Z"));
        assert_eq!(local_date(&ms, tokyo), local_date(&v, tokyo));
        assert_eq!(local_date(&json!("soon"), tokyo), None);
        assert_eq!(local_date(&json!(true), tokyo), None);
    }

    #[test]
    fn a_skipped_local_time_moves_an_hour_later() {
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        // 02:30 does not exist on 2026-03-29 in Berlin (clocks go 02:00 -> 03:00).
        let at = entry_at(&json!("2026-03-29"), berlin, 0, 150).unwrap();
        assert_eq!(at, utc("2026-03-29T01:30:00Z"));
    }
}
