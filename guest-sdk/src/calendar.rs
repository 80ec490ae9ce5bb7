//! Calendar time for journeys: dates, times of day and time zones, computed from the host's
//! `now` and the customer's attributes, never from a clock.
//!
//! Durations ([`days`] and friends) say how long to wait; this module says *when*
//! something is on the customer's calendar: 30 days before their renewal date, 09:00 on their
//! birthday in their own time zone.
//!
//! - [`Date`] — a calendar date (`2026-03-01`), with day arithmetic.
//! - [`MonthDay`] — a date without a year (`03-01`): birthdays, anniversaries.
//! - [`TimeOfDay`] — a wall-clock time (`09:00`).
//! - [`TimeZone`] — an IANA time zone (`Europe/Paris`), which turns a local date and time into
//!   a [`Timestamp`] and back, daylight saving time included (the tz database is compiled in).
//! - [`Moment`] — an attribute that is either a date or a timestamp, as customer data often is.
//!
//! The [`Customer`](crate::Customer) has shortcuts: [`time_zone`](crate::Customer::time_zone),
//! [`attribute_moment`](crate::Customer::attribute_moment),
//! [`attribute_timestamp`](crate::Customer::attribute_timestamp) and
//! [`attribute_month_day`](crate::Customer::attribute_month_day).
//!
//! ```
//! use waymark_guest::calendar::{Date, MonthDay, TimeOfDay, TimeZone};
//!
//! let paris = TimeZone::named("Europe/Paris").unwrap();
//! let renewal = Date::parse("2026-07-01").unwrap();
//! // 09:00 in Paris (UTC+2 in summer), 30 days before the renewal date.
//! let reminder = paris.at(renewal.add_days(-30), TimeOfDay::hm(9, 0));
//! assert_eq!(reminder, 1_780_297_200_000); // 2026-06-01T07:00:00Z
//!
//! // The next 09:00 on the customer's birthday, strictly after `now`.
//! let now = 1_780_297_200_000;
//! let birthday = MonthDay::parse("03-14").unwrap();
//! let next = paris.next_yearly(now, birthday, TimeOfDay::hm(9, 0));
//! assert_eq!(paris.date_of(next).to_string(), "2027-03-14");
//! ```
//!
//! Everything here is a pure function of its arguments, so journeys stay deterministic. None of
//! it panics on customer data: parsing returns `Option`, and arithmetic saturates at the ends of
//! the supported range (years -262143 to 262142).

use std::fmt;

use chrono::{
    DateTime, Datelike, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, Offset, TimeZone as _,
    Timelike,
};
use serde_json::Value;

use crate::time::{days, Timestamp};

/// A calendar date in the proleptic Gregorian calendar, without a time of day or a zone.
///
/// Parse one with [`Date::parse`] (`YYYY-MM-DD`), build one with [`Date::new`], or take the
/// date of a timestamp in a zone with [`TimeZone::date_of`]. It prints as `YYYY-MM-DD`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date(NaiveDate);

impl Date {
    /// The date `year-month-day`, if it exists (`Date::new(2026, 2, 29)` does not).
    pub fn new(year: i32, month: u32, day: u32) -> Option<Date> {
        NaiveDate::from_ymd_opt(year, month, day).map(Date)
    }

    /// Parses `YYYY-MM-DD` (ISO 8601's extended calendar date); surrounding whitespace is
    /// ignored. For attributes that may also hold a timestamp, use [`Moment::parse`].
    pub fn parse(text: &str) -> Option<Date> {
        let text = text.trim();
        // chrono would also take `2026-3-1`; insist on the fixed-width form customers' data
        // uses, so that what parses is unambiguous.
        let b = text.as_bytes();
        let fixed = b.len() == 10 && b[4] == b'-' && b[7] == b'-';
        if !fixed {
            return None;
        }
        NaiveDate::parse_from_str(text, "%Y-%m-%d").ok().map(Date)
    }

    /// The year.
    pub fn year(&self) -> i32 {
        self.0.year()
    }

    /// The month, 1 to 12.
    pub fn month(&self) -> u32 {
        self.0.month()
    }

    /// The day of the month, 1 to 31.
    pub fn day(&self) -> u32 {
        self.0.day()
    }

    /// The month and day, without the year.
    pub fn month_day(&self) -> MonthDay {
        MonthDay {
            month: self.month() as u8,
            day: self.day() as u8,
        }
    }

    /// The date `n` days later (earlier for negative `n`); saturates at the ends of the
    /// supported range.
    pub fn add_days(self, n: i64) -> Date {
        let moved = if n >= 0 {
            u64::try_from(n)
                .ok()
                .and_then(|n| self.0.checked_add_days(chrono::Days::new(n)))
                .unwrap_or(NaiveDate::MAX)
        } else {
            self.0
                .checked_sub_days(chrono::Days::new(n.unsigned_abs()))
                .unwrap_or(NaiveDate::MIN)
        };
        Date(moved)
    }

    /// Days from `self` to `later`: positive if `later` is after `self`, negative if before.
    ///
    /// ```
    /// use waymark_guest::calendar::Date;
    /// let today = Date::parse("2026-02-27").unwrap();
    /// assert_eq!(today.days_until(Date::parse("2026-03-01").unwrap()), 2);
    /// ```
    pub fn days_until(self, later: Date) -> i64 {
        later.0.signed_duration_since(self.0).num_days()
    }

    /// Whether this date's year is a leap year.
    pub fn is_leap_year(&self) -> bool {
        self.0.leap_year()
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.format("%Y-%m-%d"))
    }
}

/// A day of the year without the year: a birthday, an anniversary. It prints as `MM-DD`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MonthDay {
    month: u8,
    day: u8,
}

impl MonthDay {
    /// `month`-`day`, if some year has it (`MonthDay::new(2, 29)` does; `(2, 30)` does not).
    pub fn new(month: u32, day: u32) -> Option<MonthDay> {
        // 2000 is a leap year: every month-day that exists at all exists in it.
        NaiveDate::from_ymd_opt(2000, month, day).map(|d| MonthDay {
            month: d.month() as u8,
            day: d.day() as u8,
        })
    }

    /// Parses `MM-DD`, ISO 8601's `--MM-DD`, or a whole date `YYYY-MM-DD` (its year is
    /// dropped); surrounding whitespace is ignored.
    pub fn parse(text: &str) -> Option<MonthDay> {
        let text = text.trim();
        let short = text.strip_prefix("--").unwrap_or(text);
        let b = short.as_bytes();
        if b.len() == 5
            && b[2] == b'-'
            && b.iter()
                .enumerate()
                .all(|(i, c)| i == 2 || c.is_ascii_digit())
        {
            let month = short[..2].parse().ok()?;
            let day = short[3..].parse().ok()?;
            return MonthDay::new(month, day);
        }
        Date::parse(text).map(|d| d.month_day())
    }

    /// A month-day from an attribute: a string [`parse`](Self::parse) accepts, or any
    /// [`Moment`] (the date of a timestamp is taken in UTC).
    pub fn from_value(value: &Value) -> Option<MonthDay> {
        if let Some(text) = value.as_str() {
            if let Some(md) = MonthDay::parse(text) {
                return Some(md);
            }
        }
        Moment::from_value(value).map(|m| m.date_in(TimeZone::UTC).month_day())
    }

    /// The month, 1 to 12.
    pub fn month(&self) -> u32 {
        u32::from(self.month)
    }

    /// The day of the month, 1 to 31.
    pub fn day(&self) -> u32 {
        u32::from(self.day)
    }

    /// This day in `year`. February 29 falls on February 28 in common years, so a leap-day
    /// birthday is still celebrated every year, and never in March.
    pub fn in_year(&self, year: i32) -> Date {
        let year = year.clamp(NaiveDate::MIN.year() + 1, NaiveDate::MAX.year() - 1);
        Date::new(year, self.month(), self.day())
            .or_else(|| Date::new(year, self.month(), self.day() - 1))
            .unwrap_or(Date(NaiveDate::MIN))
    }
}

impl fmt::Display for MonthDay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}-{:02}", self.month, self.day)
    }
}

/// A wall-clock time, to the minute: `09:00`. It prints as `HH:MM`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct TimeOfDay {
    hour: u8,
    minute: u8,
}

impl TimeOfDay {
    /// Midnight, `00:00`.
    pub const MIDNIGHT: TimeOfDay = TimeOfDay { hour: 0, minute: 0 };

    /// `hour:minute`, if it is a time of day (hour 0 to 23, minute 0 to 59).
    pub const fn new(hour: u32, minute: u32) -> Option<TimeOfDay> {
        if hour < 24 && minute < 60 {
            Some(TimeOfDay {
                hour: hour as u8,
                minute: minute as u8,
            })
        } else {
            None
        }
    }

    /// `hour:minute`, for constants in a journey: `const SEND_AT: TimeOfDay =
    /// TimeOfDay::hm(9, 0);`.
    ///
    /// # Panics
    ///
    /// If the time is out of range; in a `const` that is a compile error. Use
    /// [`new`](Self::new) or [`parse`](Self::parse) for data.
    pub const fn hm(hour: u32, minute: u32) -> TimeOfDay {
        match TimeOfDay::new(hour, minute) {
            Some(time) => time,
            None => panic!("TimeOfDay::hm: hour must be below 24 and minute below 60"),
        }
    }

    /// Parses `HH:MM` (24-hour clock, one or two digits for the hour).
    pub fn parse(text: &str) -> Option<TimeOfDay> {
        let (h, m) = text.trim().split_once(':')?;
        let digits = |s: &str, max_len| {
            !s.is_empty() && s.len() <= max_len && s.bytes().all(|c| c.is_ascii_digit())
        };
        if !digits(h, 2) || m.len() != 2 || !digits(m, 2) {
            return None;
        }
        TimeOfDay::new(h.parse().ok()?, m.parse().ok()?)
    }

    /// The hour, 0 to 23.
    pub const fn hour(&self) -> u32 {
        self.hour as u32
    }

    /// The minute, 0 to 59.
    pub const fn minute(&self) -> u32 {
        self.minute as u32
    }

    fn naive(self) -> NaiveTime {
        NaiveTime::from_hms_opt(self.hour(), self.minute(), 0).unwrap_or(NaiveTime::MIN)
    }
}

impl fmt::Display for TimeOfDay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.hour, self.minute)
    }
}

/// An IANA time zone (`America/New_York`, `Europe/Paris`, `UTC`), with the rules of the tz
/// database compiled into the component, daylight saving time included.
///
/// The host's quiet hours read the customer's attribute `timezone` too;
/// [`Customer::time_zone`](crate::Customer::time_zone) reads the same attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimeZone(chrono_tz::Tz);

impl TimeZone {
    /// Coordinated Universal Time.
    pub const UTC: TimeZone = TimeZone(chrono_tz::Tz::UTC);

    /// The zone with this IANA name (exact spelling, e.g. `Asia/Tokyo`), if the tz database
    /// knows it.
    pub fn named(name: &str) -> Option<TimeZone> {
        name.trim().parse::<chrono_tz::Tz>().ok().map(TimeZone)
    }

    /// The zone's IANA name.
    pub fn name(&self) -> &'static str {
        self.0.name()
    }

    /// The local calendar date at `at` in this zone.
    pub fn date_of(&self, at: Timestamp) -> Date {
        Date(self.0.from_utc_datetime(&utc(at)).date_naive())
    }

    /// The local wall-clock time at `at` in this zone (seconds dropped).
    pub fn time_of(&self, at: Timestamp) -> TimeOfDay {
        let local = self.0.from_utc_datetime(&utc(at));
        TimeOfDay {
            hour: local.hour() as u8,
            minute: local.minute() as u8,
        }
    }

    /// The zone's offset from UTC at `at`, in milliseconds (positive east of Greenwich).
    pub fn offset_at(&self, at: Timestamp) -> i64 {
        let offset = self.0.offset_from_utc_datetime(&utc(at)).fix();
        i64::from(offset.local_minus_utc()) * 1_000
    }

    /// The instant at which the clocks of this zone read `time` on `date`.
    ///
    /// Daylight saving time: a time that does not exist because the clocks jump forward over it
    /// (02:30 on a spring-forward night) is moved forward by the jump (to 03:30), so it still
    /// happens that day; a time that happens twice because the clocks fall back is the first.
    pub fn at(&self, date: Date, time: TimeOfDay) -> Timestamp {
        let local = NaiveDateTime::new(date.0, time.naive());
        match self.0.from_local_datetime(&local) {
            LocalResult::Single(t) => t.timestamp_millis(),
            LocalResult::Ambiguous(first, _) => first.timestamp_millis(),
            LocalResult::None => {
                // In a gap: read the local time with the offset in force before the jump, which
                // lands the same distance past the jump as the time was past its start.
                let before = local.and_utc() - chrono::Duration::days(1);
                let offset = self.0.offset_from_utc_datetime(&before.naive_utc()).fix();
                (local - offset).and_utc().timestamp_millis()
            }
        }
    }

    /// The first instant strictly after `after` at which this zone's clocks read `time`: today's
    /// if it is still ahead, else tomorrow's.
    pub fn next(&self, after: Timestamp, time: TimeOfDay) -> Timestamp {
        let mut date = self.date_of(after).add_days(-1);
        // Yesterday's can still lie ahead when a gap moved it; three days always suffice.
        for _ in 0..4 {
            let candidate = self.at(date, time);
            if candidate > after {
                return candidate;
            }
            date = date.add_days(1);
        }
        self.at(date, time)
    }

    /// The first instant strictly after `after` at which this zone's clocks read `time` on
    /// `day` (February 29 falls on February 28 in common years; see [`MonthDay::in_year`]).
    pub fn next_yearly(&self, after: Timestamp, day: MonthDay, time: TimeOfDay) -> Timestamp {
        let mut year = self.date_of(after).year() - 1;
        for _ in 0..3 {
            let candidate = self.at(day.in_year(year), time);
            if candidate > after {
                return candidate;
            }
            year += 1;
        }
        self.at(day.in_year(year), time)
    }
}

impl Default for TimeZone {
    /// UTC.
    fn default() -> Self {
        TimeZone::UTC
    }
}

impl fmt::Display for TimeZone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `at` as a UTC date-time, clamped to chrono's range (years -262143 to 262142), which
/// timestamps far beyond any customer's lifetime would exceed.
fn utc(at: Timestamp) -> NaiveDateTime {
    match DateTime::from_timestamp_millis(at) {
        Some(t) => t.naive_utc(),
        None if at < 0 => NaiveDateTime::MIN,
        None => NaiveDateTime::MAX,
    }
}

/// A date-like attribute: customer data holds calendar dates (`"2026-07-01"`) and timestamps
/// (`"2026-07-01T08:30:00Z"`, or milliseconds) alike, and which one it is matters for "what
/// day is that for the customer".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Moment {
    /// A calendar date, the same day in every zone.
    Date(Date),
    /// An instant, milliseconds since the Unix epoch; its date depends on the zone.
    Timestamp(Timestamp),
}

impl Moment {
    /// Parses a date `YYYY-MM-DD`, or an RFC 3339 timestamp (`2026-07-01T08:30:00Z`,
    /// `2026-07-01T10:30:00+02:00`, fractional seconds allowed, `T` or a space between date and
    /// time). Surrounding whitespace is ignored.
    pub fn parse(text: &str) -> Option<Moment> {
        let text = text.trim();
        if let Some(date) = Date::parse(text) {
            return Some(Moment::Date(date));
        }
        DateTime::parse_from_rfc3339(text)
            .ok()
            .map(|t| Moment::Timestamp(t.timestamp_millis()))
    }

    /// A moment from an attribute: a string [`parse`](Self::parse) accepts, or an integer
    /// number of milliseconds since the Unix epoch (the contract's unit; not seconds).
    pub fn from_value(value: &Value) -> Option<Moment> {
        match value {
            Value::String(text) => Moment::parse(text),
            Value::Number(n) => n.as_i64().map(Moment::Timestamp),
            _ => None,
        }
    }

    /// The calendar date this moment falls on in `zone` (a [`Moment::Date`] is the same date
    /// everywhere).
    pub fn date_in(&self, zone: TimeZone) -> Date {
        match *self {
            Moment::Date(date) => date,
            Moment::Timestamp(at) => zone.date_of(at),
        }
    }

    /// The instant: a timestamp as it is, a date at midnight in `zone`.
    pub fn timestamp_in(&self, zone: TimeZone) -> Timestamp {
        match *self {
            Moment::Date(date) => zone.at(date, TimeOfDay::MIDNIGHT),
            Moment::Timestamp(at) => at,
        }
    }
}

/// Whole days from `from` to `to`, rounded toward zero: `days_between(now, renewal_at)`.
/// Negative when `to` is earlier.
pub fn days_between(from: Timestamp, to: Timestamp) -> i64 {
    to.saturating_sub(from) / days(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// `YYYY-MM-DDTHH:MM:SSZ` to milliseconds, for readable expectations.
    fn ts(text: &str) -> Timestamp {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .timestamp_millis()
    }

    fn date(text: &str) -> Date {
        Date::parse(text).unwrap()
    }

    fn zone(name: &str) -> TimeZone {
        TimeZone::named(name).unwrap()
    }

    #[test]
    fn dates_parse_only_the_fixed_width_iso_form_and_print_it_back() {
        assert_eq!(date(" 2026-03-01 ").to_string(), "2026-03-01");
        let d = date("2028-02-29");
        assert_eq!((d.year(), d.month(), d.day()), (2028, 2, 29));
        assert!(d.is_leap_year());
        for bad in [
            "2026-02-29",
            "2026-3-1",
            "2026/03/01",
            "01-03-2026",
            "",
            "2026-03-01T00:00:00Z",
        ] {
            assert_eq!(Date::parse(bad), None, "{bad:?}");
        }
        assert_eq!(Date::new(2026, 2, 29), None);
        assert_eq!(Date::new(2026, 13, 1), None);
    }

    #[test]
    fn day_arithmetic_crosses_months_years_and_leap_days() {
        assert_eq!(date("2026-03-01").add_days(-1), date("2026-02-28"));
        assert_eq!(date("2028-03-01").add_days(-1), date("2028-02-29"));
        assert_eq!(date("2026-12-31").add_days(1), date("2027-01-01"));
        assert_eq!(date("2026-07-01").add_days(-30), date("2026-06-01"));
        assert_eq!(date("2026-01-01").days_until(date("2027-01-01")), 365);
        assert_eq!(date("2028-01-01").days_until(date("2029-01-01")), 366);
        assert_eq!(date("2026-03-01").days_until(date("2026-02-01")), -28);
    }

    #[test]
    fn day_arithmetic_saturates_instead_of_panicking() {
        let far = date("2026-01-01").add_days(i64::MAX);
        assert_eq!(far, Date(NaiveDate::MAX));
        assert_eq!(date("2026-01-01").add_days(i64::MIN), Date(NaiveDate::MIN));
        // And the extremes still convert to timestamps and back.
        let _ = TimeZone::UTC.at(far, TimeOfDay::hm(23, 59));
        let _ = TimeZone::UTC.date_of(i64::MAX);
        let _ = TimeZone::UTC.date_of(i64::MIN);
        let _ =
            TimeZone::UTC.next_yearly(i64::MAX, MonthDay::new(2, 29).unwrap(), TimeOfDay::MIDNIGHT);
    }

    #[test]
    fn month_days_parse_short_iso_and_full_dates() {
        let md = MonthDay::parse("03-14").unwrap();
        assert_eq!((md.month(), md.day()), (3, 14));
        assert_eq!(MonthDay::parse("--03-14"), Some(md));
        assert_eq!(MonthDay::parse("1990-03-14"), Some(md));
        assert_eq!(md.to_string(), "03-14");
        assert!(
            MonthDay::parse("02-29").is_some(),
            "leap-day birthdays exist"
        );
        for bad in ["02-30", "13-01", "3-14", "03/14", "0x-14", ""] {
            assert_eq!(MonthDay::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn month_days_come_from_strings_or_timestamps() {
        let md = MonthDay::new(3, 14).unwrap();
        assert_eq!(MonthDay::from_value(&json!("03-14")), Some(md));
        assert_eq!(MonthDay::from_value(&json!("1990-03-14")), Some(md));
        assert_eq!(
            MonthDay::from_value(&json!("1990-03-14T12:00:00Z")),
            Some(md)
        );
        assert_eq!(
            MonthDay::from_value(&json!(ts("1990-03-14T12:00:00Z"))),
            Some(md)
        );
        assert_eq!(MonthDay::from_value(&json!(true)), None);
        assert_eq!(MonthDay::from_value(&json!("soon")), None);
    }

    #[test]
    fn leap_day_falls_on_february_28_in_common_years() {
        let leap = MonthDay::new(2, 29).unwrap();
        assert_eq!(leap.in_year(2027), date("2027-02-28"));
        assert_eq!(leap.in_year(2028), date("2028-02-29"));
        assert_eq!(
            MonthDay::new(3, 1).unwrap().in_year(2027),
            date("2027-03-01")
        );
    }

    #[test]
    fn times_of_day_parse_hh_mm() {
        assert_eq!(TimeOfDay::parse("09:00"), Some(TimeOfDay::hm(9, 0)));
        assert_eq!(TimeOfDay::parse("9:05"), Some(TimeOfDay::hm(9, 5)));
        assert_eq!(
            TimeOfDay::parse("23:59").map(|t| t.to_string()),
            Some("23:59".into())
        );
        for bad in [
            "24:00", "12:60", "12:5", "noon", "12", ":30", "-1:00", "123:00",
        ] {
            assert_eq!(TimeOfDay::parse(bad), None, "{bad:?}");
        }
        assert_eq!(TimeOfDay::new(24, 0), None);
        const SEND_AT: TimeOfDay = TimeOfDay::hm(9, 30);
        assert_eq!((SEND_AT.hour(), SEND_AT.minute()), (9, 30));
    }

    #[test]
    fn zones_are_found_by_their_iana_names() {
        assert_eq!(zone("Europe/Paris").name(), "Europe/Paris");
        assert_eq!(zone("UTC"), TimeZone::UTC);
        assert_eq!(TimeZone::default(), TimeZone::UTC);
        assert_eq!(TimeZone::named("Mars/Olympus_Mons"), None);
        assert_eq!(TimeZone::named(""), None);
        assert_eq!(zone("Asia/Tokyo").to_string(), "Asia/Tokyo");
    }

    #[test]
    fn local_date_and_time_of_an_instant_depend_on_the_zone() {
        let at = ts("2026-03-01T23:30:00Z");
        assert_eq!(TimeZone::UTC.date_of(at), date("2026-03-01"));
        assert_eq!(zone("Asia/Tokyo").date_of(at), date("2026-03-02"));
        assert_eq!(zone("Asia/Tokyo").time_of(at), TimeOfDay::hm(8, 30));
        assert_eq!(zone("America/New_York").date_of(at), date("2026-03-01"));
        assert_eq!(zone("America/New_York").time_of(at), TimeOfDay::hm(18, 30));
        assert_eq!(
            zone("Asia/Kolkata").offset_at(at),
            5 * 3_600_000 + 30 * 60_000
        );
    }

    #[test]
    fn local_times_follow_daylight_saving_time() {
        let ny = zone("America/New_York");
        let nine = TimeOfDay::hm(9, 0);
        assert_eq!(
            ny.at(date("2026-01-15"), nine),
            ts("2026-01-15T14:00:00Z"),
            "EST"
        );
        assert_eq!(
            ny.at(date("2026-07-15"), nine),
            ts("2026-07-15T13:00:00Z"),
            "EDT"
        );
        assert_eq!(ny.offset_at(ts("2026-07-15T13:00:00Z")), -4 * 3_600_000);
    }

    #[test]
    fn a_time_skipped_by_spring_forward_moves_forward_by_the_jump() {
        // 2026-03-08: New York's clocks jump from 02:00 EST to 03:00 EDT.
        let ny = zone("America/New_York");
        let skipped = ny.at(date("2026-03-08"), TimeOfDay::hm(2, 30));
        assert_eq!(skipped, ts("2026-03-08T07:30:00Z"), "03:30 EDT");
        assert_eq!(ny.time_of(skipped), TimeOfDay::hm(3, 30));
        assert_eq!(ny.date_of(skipped), date("2026-03-08"));
    }

    #[test]
    fn a_time_repeated_by_fall_back_is_the_first_one() {
        // 2026-11-01: New York's clocks fall back from 02:00 EDT to 01:00 EST.
        let ny = zone("America/New_York");
        let twice = ny.at(date("2026-11-01"), TimeOfDay::hm(1, 30));
        assert_eq!(twice, ts("2026-11-01T05:30:00Z"), "01:30 EDT, not EST");
    }

    #[test]
    fn next_time_of_day_is_strictly_after() {
        let paris = zone("Europe/Paris");
        let nine = TimeOfDay::hm(9, 0);
        // 08:00 in Paris (UTC+1 in winter): today's 09:00 is ahead.
        assert_eq!(
            paris.next(ts("2026-01-10T07:00:00Z"), nine),
            ts("2026-01-10T08:00:00Z")
        );
        // Exactly 09:00: the next one is tomorrow's.
        assert_eq!(
            paris.next(ts("2026-01-10T08:00:00Z"), nine),
            ts("2026-01-11T08:00:00Z")
        );
        // 23:30 UTC is already tomorrow in Paris.
        assert_eq!(
            paris.next(ts("2026-01-10T23:30:00Z"), nine),
            ts("2026-01-11T08:00:00Z")
        );
        // Across the spring-forward night: 09:00 CEST is 07:00 UTC.
        assert_eq!(
            paris.next(ts("2026-03-28T12:00:00Z"), nine),
            ts("2026-03-29T07:00:00Z")
        );
    }

    #[test]
    fn next_time_of_day_in_a_gap_is_not_missed() {
        // 02:30 does not exist in New York on 2026-03-08; the next "02:30" after 01:00 that day
        // is the moved one, 03:30 EDT, and after that, the next day's.
        let ny = zone("America/New_York");
        let half_past_two = TimeOfDay::hm(2, 30);
        let moved = ts("2026-03-08T07:30:00Z");
        assert_eq!(ny.next(ts("2026-03-08T06:00:00Z"), half_past_two), moved);
        assert_eq!(ny.next(moved, half_past_two), ts("2026-03-09T06:30:00Z"));
    }

    #[test]
    fn next_yearly_finds_this_years_or_next_years_day() {
        let tokyo = zone("Asia/Tokyo");
        let nine = TimeOfDay::hm(9, 0);
        let birthday = MonthDay::new(3, 14).unwrap();
        // 09:00 in Tokyo is 00:00 UTC.
        assert_eq!(
            tokyo.next_yearly(ts("2026-01-01T00:00:00Z"), birthday, nine),
            ts("2026-03-14T00:00:00Z")
        );
        assert_eq!(
            tokyo.next_yearly(ts("2026-03-14T00:00:00Z"), birthday, nine),
            ts("2027-03-14T00:00:00Z")
        );
        // New Year's Eve in UTC is already New Year's Day in Tokyo.
        let new_year = MonthDay::new(1, 1).unwrap();
        assert_eq!(
            tokyo.next_yearly(ts("2026-12-31T20:00:00Z"), new_year, nine),
            ts("2027-01-01T00:00:00Z")
        );
        let leap = MonthDay::new(2, 29).unwrap();
        assert_eq!(
            TimeZone::UTC.next_yearly(ts("2027-01-01T00:00:00Z"), leap, nine),
            ts("2027-02-28T09:00:00Z")
        );
        assert_eq!(
            TimeZone::UTC.next_yearly(ts("2027-02-28T09:00:00Z"), leap, nine),
            ts("2028-02-29T09:00:00Z")
        );
    }

    #[test]
    fn moments_are_dates_or_timestamps() {
        assert_eq!(
            Moment::parse("2026-07-01"),
            Some(Moment::Date(date("2026-07-01")))
        );
        let instant = ts("2026-07-01T08:30:00Z");
        for text in [
            "2026-07-01T08:30:00Z",
            "2026-07-01T10:30:00+02:00",
            "2026-07-01T08:30:00.000Z",
            "2026-07-01 08:30:00Z",
        ] {
            assert_eq!(
                Moment::parse(text),
                Some(Moment::Timestamp(instant)),
                "{text}"
            );
        }
        assert_eq!(
            Moment::from_value(&json!(instant)),
            Some(Moment::Timestamp(instant))
        );
        for bad in [
            json!("2026-07-01T08:30:00"),
            json!("next week"),
            json!(1.5),
            json!(null),
            json!([]),
        ] {
            assert_eq!(Moment::from_value(&bad), None, "{bad}");
        }
    }

    #[test]
    fn a_moments_date_and_instant_depend_on_the_zone_only_for_timestamps() {
        let tokyo = zone("Asia/Tokyo");
        let day = Moment::Date(date("2026-07-01"));
        assert_eq!(day.date_in(tokyo), date("2026-07-01"));
        assert_eq!(day.timestamp_in(TimeZone::UTC), ts("2026-07-01T00:00:00Z"));
        assert_eq!(day.timestamp_in(tokyo), ts("2026-06-30T15:00:00Z"));
        let instant = Moment::Timestamp(ts("2026-06-30T20:00:00Z"));
        assert_eq!(instant.date_in(TimeZone::UTC), date("2026-06-30"));
        assert_eq!(instant.date_in(tokyo), date("2026-07-01"));
        assert_eq!(instant.timestamp_in(tokyo), ts("2026-06-30T20:00:00Z"));
    }

    #[test]
    fn days_between_counts_whole_days() {
        let now = ts("2026-06-01T12:00:00Z");
        assert_eq!(days_between(now, ts("2026-07-01T12:00:00Z")), 30);
        assert_eq!(days_between(now, ts("2026-07-01T11:59:59Z")), 29);
        assert_eq!(days_between(now, ts("2026-05-31T12:00:00Z")), -1);
        assert_eq!(days_between(i64::MIN, i64::MAX), i64::MAX / days(1));
    }
}
