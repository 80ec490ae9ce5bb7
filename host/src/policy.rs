//! The sending policy, **pure**: when a decided send may go out, given the customer's earlier
//! sends, the tenant's frequency caps and quiet hours in the customer's time zone. A send is
//! only ever deferred, never dropped, and sends through one channel keep their order.

use crate::model::{Customer, FrequencyCap, Millis, QuietHours, SendingPolicy};
use chrono::{NaiveTime, TimeZone, Timelike};
use chrono_tz::Tz;

/// The most deferral steps tried before giving up on finding a free slot (caps and quiet
/// hours each only move a send later, so this is a guard, never reached in practice).
const MAX_STEPS: usize = 64;

/// Why a policy is refused, in words for the API.
pub fn validate(policy: &SendingPolicy) -> Result<(), String> {
    for cap in &policy.frequency_caps {
        if cap.channel.is_empty() || cap.max == 0 || cap.window_ms <= 0 {
            return Err(format!(
                "a frequency cap needs a channel (or `*`), max ≥ 1 and window_ms > 0: {cap:?}"
            ));
        }
    }
    if let Some(q) = &policy.quiet_hours {
        parse_time(&q.start)?;
        parse_time(&q.end)?;
        if q.start == q.end {
            return Err("quiet hours must not start and end at the same time".into());
        }
        parse_zone(&q.default_timezone)?;
    }
    Ok(())
}

fn parse_time(hhmm: &str) -> Result<NaiveTime, String> {
    NaiveTime::parse_from_str(hhmm, "%H:%M")
        .map_err(|_| format!("{hhmm:?} is not a time of day as HH:MM"))
}

fn parse_zone(name: &str) -> Result<Tz, String> {
    name.parse::<Tz>()
        .map_err(|_| format!("{name:?} is not an IANA time zone name"))
}

/// The customer's time zone: attribute `timezone` if it names one, else `default`.
pub fn zone_of(customer: &Customer, default: &str) -> Tz {
    customer
        .attributes
        .get("timezone")
        .and_then(|v| v.as_str())
        .and_then(|name| name.parse::<Tz>().ok())
        .or_else(|| default.parse::<Tz>().ok())
        .unwrap_or(Tz::UTC)
}

/// When a send through `channel`, decided at `now`, may go out. `earlier` holds when each of
/// the customer's earlier sends went (or will go) out, per channel.
pub fn release_time(
    now: Millis,
    channel: &str,
    earlier: &[(String, Millis)],
    policy: &SendingPolicy,
    zone: Tz,
) -> Millis {
    // Never ahead of an earlier send through the same channel: order is kept.
    let mut t = earlier
        .iter()
        .filter(|(c, _)| c == channel)
        .map(|(_, at)| *at)
        .fold(now, Millis::max);
    for _ in 0..MAX_STEPS {
        let mut next = t;
        for cap in policy
            .frequency_caps
            .iter()
            .filter(|cap| cap.channel == "*" || cap.channel == channel)
        {
            next = next.max(cap_slot(next, channel, earlier, cap));
        }
        if let Some(quiet) = policy
            .quiet_hours
            .as_ref()
            .filter(|q| q.channels.is_empty() || q.channels.iter().any(|c| c == channel))
        {
            next = after_quiet_hours(next, quiet, zone);
        }
        if next == t {
            return t;
        }
        t = next;
    }
    t
}

/// The earliest time at or after `t` when a send fits under `cap`.
fn cap_slot(
    mut t: Millis,
    channel: &str,
    earlier: &[(String, Millis)],
    cap: &FrequencyCap,
) -> Millis {
    let mut times: Vec<Millis> = earlier
        .iter()
        .filter(|(c, _)| cap.channel == "*" || c == channel)
        .map(|(_, at)| *at)
        .collect();
    times.sort_unstable();
    loop {
        let in_window: Vec<Millis> = times
            .iter()
            .copied()
            .filter(|at| *at > t - cap.window_ms && *at <= t)
            .collect();
        if (in_window.len() as u64) < u64::from(cap.max) {
            return t;
        }
        // Wait until the oldest send in the window leaves it.
        t = in_window[0] + cap.window_ms;
    }
}

/// `t` itself when it is outside quiet hours in `zone`, else the end of those quiet hours.
fn after_quiet_hours(t: Millis, quiet: &QuietHours, zone: Tz) -> Millis {
    let (Ok(start), Ok(end)) = (parse_time(&quiet.start), parse_time(&quiet.end)) else {
        return t;
    };
    let Some(utc) = chrono::DateTime::from_timestamp_millis(t) else {
        return t;
    };
    let local = utc.with_timezone(&zone);
    let time = local.time();
    let quiet_now = if start < end {
        time >= start && time < end
    } else {
        time >= start || time < end
    };
    if !quiet_now {
        return t;
    }
    // The end is today if it is still ahead (after midnight in a span across it, or a span
    // within the day), else tomorrow.
    let mut end_date = local.date_naive();
    if time >= end {
        end_date = end_date.succ_opt().unwrap_or(end_date);
    }
    let end_local = end_date.and_time(end);
    // A gap (the clocks jumped forward over the end) resolves to the first valid instant.
    let resolved = zone.from_local_datetime(&end_local).earliest().or_else(|| {
        zone.from_local_datetime(&(end_local + chrono::Duration::hours(1)))
            .earliest()
    });
    match resolved {
        Some(end) => end.timestamp_millis().max(t),
        None => t,
    }
}

/// Hours and minutes of the local time, for tests and messages.
#[allow(dead_code)]
fn local_hm(t: Millis, zone: Tz) -> (u32, u32) {
    let local = chrono::DateTime::from_timestamp_millis(t)
        .expect("in range")
        .with_timezone(&zone);
    (local.hour(), local.minute())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const HOUR: Millis = 3_600_000;
    const DAY: Millis = 24 * HOUR;
    /// 2026-01-05 00:00 UTC, a Monday in winter.
    const MONDAY: Millis = 1_767_571_200_000;

    fn caps(max: u32, window_ms: Millis) -> SendingPolicy {
        SendingPolicy {
            frequency_caps: vec![FrequencyCap {
                channel: "email".into(),
                max,
                window_ms,
            }],
            quiet_hours: None,
        }
    }

    fn quiet(start: &str, end: &str) -> SendingPolicy {
        SendingPolicy {
            frequency_caps: vec![],
            quiet_hours: Some(QuietHours {
                start: start.into(),
                end: end.into(),
                default_timezone: "UTC".into(),
                channels: vec![],
            }),
        }
    }

    fn sent(times: &[Millis]) -> Vec<(String, Millis)> {
        times.iter().map(|t| ("email".to_string(), *t)).collect()
    }

    #[test]
    fn no_policy_sends_now() {
        let t = release_time(
            MONDAY,
            "email",
            &sent(&[MONDAY - 5]),
            &SendingPolicy::default(),
            Tz::UTC,
        );
        assert_eq!(t, MONDAY);
    }

    #[test]
    fn a_cap_defers_until_the_oldest_send_leaves_the_window() {
        let policy = caps(2, DAY);
        let earlier = sent(&[MONDAY - 20 * HOUR, MONDAY - 2 * HOUR]);
        assert_eq!(
            release_time(MONDAY, "email", &earlier, &policy, Tz::UTC),
            MONDAY + 4 * HOUR
        );
        // Other channels are not counted by an `email` cap.
        assert_eq!(
            release_time(MONDAY, "sms", &earlier, &policy, Tz::UTC),
            MONDAY
        );
        // Below the cap: now.
        assert_eq!(
            release_time(MONDAY, "email", &earlier[1..], &policy, Tz::UTC),
            MONDAY
        );
    }

    #[test]
    fn a_deferred_send_counts_where_it_will_go_and_order_is_kept() {
        let policy = caps(1, DAY);
        // One send already deferred to tomorrow: the next goes a day after it.
        let earlier = sent(&[MONDAY + DAY]);
        assert_eq!(
            release_time(MONDAY, "email", &earlier, &policy, Tz::UTC),
            MONDAY + 2 * DAY
        );
    }

    #[test]
    fn a_star_cap_counts_every_channel_together() {
        let policy = SendingPolicy {
            frequency_caps: vec![FrequencyCap {
                channel: "*".into(),
                max: 1,
                window_ms: HOUR,
            }],
            quiet_hours: None,
        };
        let earlier = vec![("sms".to_string(), MONDAY - 10 * 60_000)];
        assert_eq!(
            release_time(MONDAY, "email", &earlier, &policy, Tz::UTC),
            MONDAY + 50 * 60_000
        );
    }

    #[test]
    fn quiet_hours_across_midnight_defer_to_their_end_in_the_customers_zone() {
        let policy = quiet("21:00", "08:00");
        // 23:00 UTC Monday → 08:00 UTC Tuesday.
        assert_eq!(
            release_time(MONDAY + 23 * HOUR, "email", &[], &policy, Tz::UTC),
            MONDAY + DAY + 8 * HOUR
        );
        // 03:00 UTC → 08:00 the same day.
        assert_eq!(
            release_time(MONDAY + 3 * HOUR, "email", &[], &policy, Tz::UTC),
            MONDAY + 8 * HOUR
        );
        // 12:00 UTC is fine.
        assert_eq!(
            release_time(MONDAY + 12 * HOUR, "email", &[], &policy, Tz::UTC),
            MONDAY + 12 * HOUR
        );
        // 12:00 UTC is 21:00 in Tokyo: quiet until 08:00 Tokyo, 23:00 UTC.
        let tokyo: Tz = "Asia/Tokyo".parse().unwrap();
        let t = release_time(MONDAY + 12 * HOUR, "email", &[], &policy, tokyo);
        assert_eq!(t, MONDAY + 23 * HOUR);
        assert_eq!(local_hm(t, tokyo), (8, 0));
    }

    #[test]
    fn quiet_hours_within_a_day_and_per_channel() {
        let mut policy = quiet("12:00", "13:30");
        assert_eq!(
            release_time(MONDAY + 12 * HOUR + 5, "email", &[], &policy, Tz::UTC),
            MONDAY + 13 * HOUR + 30 * 60_000
        );
        policy.quiet_hours.as_mut().unwrap().channels = vec!["sms".into()];
        assert_eq!(
            release_time(MONDAY + 12 * HOUR + 5, "email", &[], &policy, Tz::UTC),
            MONDAY + 12 * HOUR + 5,
            "quiet hours of sms only"
        );
    }

    #[test]
    fn a_cap_slot_inside_quiet_hours_moves_to_their_end() {
        let mut policy = caps(1, 4 * HOUR);
        policy.quiet_hours = quiet("21:00", "08:00").quiet_hours;
        // Sent at 19:00; the cap frees at 23:00, inside quiet hours: 08:00 next day.
        let earlier = sent(&[MONDAY + 19 * HOUR]);
        assert_eq!(
            release_time(MONDAY + 20 * HOUR, "email", &earlier, &policy, Tz::UTC),
            MONDAY + DAY + 8 * HOUR
        );
    }

    #[test]
    fn the_zone_comes_from_the_customer_else_the_default() {
        let c = |attrs: serde_json::Value| Customer {
            id: "c".into(),
            attributes: attrs.as_object().unwrap().clone(),
        };
        assert_eq!(
            zone_of(&c(json!({"timezone": "Europe/Paris"})), "UTC"),
            chrono_tz::Europe::Paris
        );
        assert_eq!(
            zone_of(&c(json!({"timezone": "Mars/Olympus"})), "Asia/Tokyo"),
            chrono_tz::Asia::Tokyo
        );
        assert_eq!(zone_of(&c(json!({})), "nonsense"), Tz::UTC);
    }

    #[test]
    fn invalid_policies_are_refused_with_reasons() {
        assert!(validate(&caps(0, DAY)).is_err());
        assert!(validate(&caps(1, 0)).is_err());
        assert!(validate(&quiet("25:00", "08:00"))
            .unwrap_err()
            .contains("HH:MM"));
        assert!(validate(&quiet("08:00", "08:00")).is_err());
        let mut bad_zone = quiet("21:00", "08:00");
        bad_zone.quiet_hours.as_mut().unwrap().default_timezone = "Nowhere/Land".into();
        assert!(validate(&bad_zone).unwrap_err().contains("IANA"));
        assert_eq!(validate(&caps(2, DAY)), Ok(()));
    }
}

/// Properties of the sending policy over random caps, quiet hours, histories and times.
#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    const HOUR: Millis = 3_600_000;
    /// 2000-01-01 and 2100-01-01 (UTC): the times under test.
    const FROM: Millis = 946_684_800_000;
    const TO: Millis = 4_102_444_800_000;
    /// Zones without daylight saving time, so every local time exists exactly once.
    const ZONES: [&str; 4] = ["UTC", "Asia/Tokyo", "America/Bogota", "Asia/Kolkata"];
    const CHANNELS: [&str; 3] = ["email", "sms", "push"];

    fn channel() -> impl Strategy<Value = String> {
        prop::sample::select(&CHANNELS[..]).prop_map(str::to_string)
    }

    fn cap() -> impl Strategy<Value = FrequencyCap> {
        (
            prop_oneof![channel(), Just("*".to_string())],
            1u32..4,
            1..72 * HOUR,
        )
            .prop_map(|(channel, max, window_ms)| FrequencyCap {
                channel,
                max,
                window_ms,
            })
    }

    fn hhmm() -> impl Strategy<Value = String> {
        (0u32..24, 0u32..60).prop_map(|(h, m)| format!("{h:02}:{m:02}"))
    }

    fn quiet() -> impl Strategy<Value = Option<QuietHours>> {
        prop::option::of(
            (
                hhmm(),
                hhmm(),
                prop::sample::select(&ZONES[..]),
                prop::collection::vec(channel(), 0..2),
            )
                .prop_filter("start and end differ", |(s, e, _, _)| s != e)
                .prop_map(|(start, end, zone, channels)| QuietHours {
                    start,
                    end,
                    default_timezone: zone.to_string(),
                    channels,
                }),
        )
    }

    fn policy() -> impl Strategy<Value = SendingPolicy> {
        (prop::collection::vec(cap(), 0..3), quiet()).prop_map(|(frequency_caps, quiet_hours)| {
            SendingPolicy {
                frequency_caps,
                quiet_hours,
            }
        })
    }

    /// A send time and earlier sends within a few days of it.
    fn history() -> impl Strategy<Value = (Millis, Vec<(String, Millis)>)> {
        (FROM..TO).prop_flat_map(|now| {
            (
                Just(now),
                prop::collection::vec((channel(), now - 96 * HOUR..now + 24 * HOUR), 0..8),
            )
        })
    }

    fn is_quiet(t: Millis, quiet: &QuietHours, zone: Tz) -> bool {
        let (start, end) = (
            parse_time(&quiet.start).unwrap(),
            parse_time(&quiet.end).unwrap(),
        );
        let time = chrono::DateTime::from_timestamp_millis(t)
            .unwrap()
            .with_timezone(&zone)
            .time();
        if start < end {
            time >= start && time < end
        } else {
            time >= start || time < end
        }
    }

    proptest! {
        #[test]
        fn generated_policies_are_valid(policy in policy()) {
            prop_assert_eq!(validate(&policy), Ok(()));
        }

        #[test]
        fn a_send_is_only_deferred_and_keeps_its_channels_order(
            policy in policy(), (now, earlier) in history(), channel in channel(),
        ) {
            let zone = zone_of_policy(&policy);
            let t = release_time(now, &channel, &earlier, &policy, zone);
            prop_assert!(t >= now);
            for (c, at) in &earlier {
                if *c == channel {
                    prop_assert!(t >= *at, "{t} before the earlier {channel} send at {at}");
                }
            }
        }

        #[test]
        fn the_release_time_honours_every_cap_and_quiet_hours(
            policy in policy(), (now, earlier) in history(), channel in channel(),
        ) {
            let zone = zone_of_policy(&policy);
            let t = release_time(now, &channel, &earlier, &policy, zone);
            let applies = |c: &str| c == "*" || c == channel;
            for cap in policy.frequency_caps.iter().filter(|cap| applies(&cap.channel)) {
                let counted = earlier
                    .iter()
                    .filter(|(c, at)| {
                        (cap.channel == "*" || *c == channel)
                            && *at > t - cap.window_ms
                            && *at <= t
                    })
                    .count();
                prop_assert!(
                    (counted as u64) < u64::from(cap.max),
                    "{counted} sends in the window of {cap:?} ending at {t}"
                );
            }
            if let Some(quiet) = policy
                .quiet_hours
                .as_ref()
                .filter(|q| q.channels.is_empty() || q.channels.contains(&channel))
            {
                prop_assert!(!is_quiet(t, quiet, zone), "{t} is within {quiet:?}");
            }
        }

        #[test]
        fn a_release_time_is_a_fixed_point(
            policy in policy(), (now, earlier) in history(), channel in channel(),
        ) {
            let zone = zone_of_policy(&policy);
            let t = release_time(now, &channel, &earlier, &policy, zone);
            prop_assert_eq!(release_time(t, &channel, &earlier, &policy, zone), t);
        }

        #[test]
        fn without_a_policy_a_send_goes_now_or_after_its_channels_last(
            (now, earlier) in history(), channel in channel(),
        ) {
            let last = earlier.iter().filter(|(c, _)| *c == channel).map(|(_, at)| *at).max();
            prop_assert_eq!(
                release_time(now, &channel, &earlier, &SendingPolicy::default(), Tz::UTC),
                last.map_or(now, |at| at.max(now))
            );
        }
    }

    fn zone_of_policy(policy: &SendingPolicy) -> Tz {
        policy
            .quiet_hours
            .as_ref()
            .map_or(Tz::UTC, |q| q.default_timezone.parse().unwrap())
    }
}
