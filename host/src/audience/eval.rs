//! Evaluating an audience expression (see [`super::expr`]) over a customer's attributes and
//! their account's traits, at the trigger's now. Pure: the shell hands in both objects.
//!
//! Semantics, documented in `docs/API.md`:
//! - a path reads nested objects (`address.city`); `account.…` reads the account's traits; a
//!   missing attribute is `null`;
//! - `==`/`!=` compare JSON values (numbers by value); `<`… order two numbers, or two strings
//!   (so ISO-8601 dates in the same format order by time); anything else is false;
//! - `and`/`or`/`not` treat only `true` as true;
//! - dates (for `days_until`/`days_since`) are milliseconds since the epoch, RFC 3339 date-times
//!   or `YYYY-MM-DD` (midnight UTC); anything else makes the call `null`.

use super::expr::{Cmp, DateFn, Expr, Value};
use crate::model::{Millis, Object};
use chrono::{DateTime, NaiveDate};

pub const DAY_MS: Millis = 86_400_000;

/// What an expression reads: the customer's attributes and their account's traits.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub attributes: &'a Object,
    pub account: Option<&'a Object>,
}

impl Subject<'_> {
    /// The JSON at a dotted path, if any.
    pub fn lookup(&self, path: &[String]) -> Option<&serde_json::Value> {
        let (root, rest) = match path.split_first() {
            Some((first, rest)) if first == "account" && !rest.is_empty() => (self.account?, rest),
            _ => (self.attributes, path),
        };
        let (first, rest) = rest.split_first()?;
        let mut at = root.get(first)?;
        for part in rest {
            at = at.as_object()?.get(part)?;
        }
        Some(at)
    }
}

/// Whether the expression holds for `subject` at `now`.
pub fn matches(expr: &Expr, subject: Subject<'_>, now: Millis) -> bool {
    eval(expr, subject, now) == Value::Bool(true)
}

fn eval(expr: &Expr, s: Subject<'_>, now: Millis) -> Value {
    match expr {
        Expr::Literal(v) => v.clone(),
        Expr::Path(p) => s.lookup(p).map_or(Value::Null, from_json),
        Expr::Exists(p) => Value::Bool(s.lookup(p).is_some_and(|v| !v.is_null())),
        Expr::Days(f, p) => s
            .lookup(p)
            .and_then(date_millis)
            .map_or(Value::Null, |at| Value::Number(days(*f, at, now) as f64)),
        Expr::Not(e) => Value::Bool(eval(e, s, now) != Value::Bool(true)),
        Expr::And(a, b) => Value::Bool(
            eval(a, s, now) == Value::Bool(true) && eval(b, s, now) == Value::Bool(true),
        ),
        Expr::Or(a, b) => Value::Bool(
            eval(a, s, now) == Value::Bool(true) || eval(b, s, now) == Value::Bool(true),
        ),
        Expr::Compare(op, a, b) => Value::Bool(compare(*op, &eval(a, s, now), &eval(b, s, now))),
        Expr::In(e, items) => {
            let v = eval(e, s, now);
            Value::Bool(items.iter().any(|item| compare(Cmp::Eq, &v, item)))
        }
    }
}

fn from_json(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => n.as_f64().map_or(Value::Null, Value::Number),
        serde_json::Value::String(s) => Value::String(s.clone()),
        other => Value::Json(other.clone()),
    }
}

fn compare(op: Cmp, a: &Value, b: &Value) -> bool {
    use std::cmp::Ordering;
    let order: Option<Ordering> = match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.partial_cmp(y),
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        _ => None,
    };
    match op {
        Cmp::Eq => a == b,
        Cmp::Ne => a != b,
        Cmp::Lt => order == Some(Ordering::Less),
        Cmp::Le => matches!(order, Some(Ordering::Less | Ordering::Equal)),
        Cmp::Gt => order == Some(Ordering::Greater),
        Cmp::Ge => matches!(order, Some(Ordering::Greater | Ordering::Equal)),
    }
}

/// A date attribute as milliseconds since the epoch: a number (milliseconds), an RFC 3339
/// date-time, or a `YYYY-MM-DD` date (midnight UTC).
pub fn date_millis(v: &serde_json::Value) -> Option<Millis> {
    match v {
        serde_json::Value::Number(n) => n.as_i64(),
        serde_json::Value::String(s) => DateTime::parse_from_rfc3339(s)
            .map(|d| d.timestamp_millis())
            .ok()
            .or_else(|| {
                let date = NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?;
                Some(date.and_hms_opt(0, 0, 0)?.and_utc().timestamp_millis())
            }),
        _ => None,
    }
}

/// Whole days: since `at` rounded down; until `at` rounded up (its negation), so that
/// `days_until(x) <= 7` starts to hold exactly seven days before `x`.
fn days(f: DateFn, at: Millis, now: Millis) -> i64 {
    let since = now.saturating_sub(at).div_euclid(DAY_MS);
    match f {
        DateFn::Since => since,
        DateFn::Until => -since,
    }
}

/// The next moment after `now` at which a date function over `at` changes value: both change
/// when `now - at` crosses a whole number of days. Re-evaluating a condition then (and only
/// for customers who have the attribute) keeps it exact without looking at anyone else.
pub fn next_change(at: Millis, now: Millis) -> Millis {
    let into_day = now.saturating_sub(at).rem_euclid(DAY_MS);
    now.saturating_add(DAY_MS - into_day)
}

#[cfg(test)]
mod tests {
    use super::super::expr::parse;
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn obj(v: serde_json::Value) -> Object {
        v.as_object().cloned().unwrap_or_default()
    }

    fn holds(source: &str, attributes: serde_json::Value, now: Millis) -> bool {
        let attributes = obj(attributes);
        let account = obj(json!({"tier": "gold", "seats": 12}));
        let subject = Subject {
            attributes: &attributes,
            account: Some(&account),
        };
        matches(&parse(source).unwrap(), subject, now)
    }

    #[test]
    fn the_trial_ending_condition_holds_from_seven_days_before_the_end() {
        let end = 100 * DAY_MS;
        let c = r#"plan == "trial" and days_until(trial_ends_at) <= 7"#;
        let trial = |now| holds(c, json!({"plan": "trial", "trial_ends_at": end}), now);
        assert!(!trial(end - 7 * DAY_MS - 1));
        assert!(trial(end - 7 * DAY_MS));
        assert!(trial(end + 3 * DAY_MS));
        assert!(!holds(c, json!({"plan": "pro", "trial_ends_at": end}), end));
        assert!(
            !holds(c, json!({"plan": "trial"}), end),
            "no date: null <= 7 is false"
        );
        let iso = json!({"plan": "trial", "trial_ends_at": "1970-04-11"}); // day 100
        assert!(holds(c, iso.clone(), end - 7 * DAY_MS));
        assert!(!holds(c, iso, end - 8 * DAY_MS));
        let rfc = json!({"plan": "trial", "trial_ends_at": "1970-04-11T00:00:00+00:00"});
        assert!(holds(c, rfc, end - 7 * DAY_MS));
    }

    #[test]
    fn operators_follow_the_documented_semantics() {
        let a = json!({"n": 3, "s": "b", "t": true, "z": null, "nested": {"city": "Oslo"}});
        for (source, expected) in [
            (
                "n == 3 and n != 4 and n < 4 and n <= 3 and n > 2 and n >= 3",
                true,
            ),
            (r#"s > "a" and s < "c""#, true),
            (r#"n < "4""#, false),
            (r#"n in [1, 3] and s in ["a", "b"] and not (s in [])"#, true),
            ("t and not z", true),
            ("exists(n) and not exists(z) and not exists(missing)", true),
            ("missing == null and z == null", true),
            (r#"nested.city == "Oslo" and nested.city.x == null"#, true),
            (r#"account.tier == "gold" and account.seats >= 10"#, true),
            ("n or false", false),
            ("n == 3 or missing", true),
            ("days_since(missing) > -1", false),
        ] {
            assert_eq!(holds(source, a.clone(), 0), expected, "{source}");
        }
    }

    #[test]
    fn without_an_account_account_paths_are_null() {
        let attributes = obj(json!({"account": {"tier": "gold"}}));
        let s = Subject {
            attributes: &attributes,
            account: None,
        };
        assert!(matches(&parse("account.tier == null").unwrap(), s, 0));
    }

    proptest! {
        /// The next change is the first moment after now where the day counts differ, and they
        /// stay the same until then.
        #[test]
        fn next_change_is_where_the_day_count_changes(at in -1_000_000_000_000i64..1_000_000_000_000, now in -1_000_000_000_000i64..1_000_000_000_000) {
            let next = next_change(at, now);
            prop_assert!(next > now && next - now <= DAY_MS);
            prop_assert_eq!(days(DateFn::Since, at, next - 1), days(DateFn::Since, at, now));
            prop_assert_eq!(days(DateFn::Since, at, next), days(DateFn::Since, at, now) + 1);
            prop_assert_eq!(days(DateFn::Until, at, now), -days(DateFn::Since, at, now));
        }

        /// `not` and `in` agree with their definitions for any number.
        #[test]
        fn not_negates_and_in_is_any_equal(n in -1000i64..1000, items in proptest::collection::vec(-1000i64..1000, 0..5)) {
            let list: Vec<String> = items.iter().map(|i| i.to_string()).collect();
            let source = format!("n in [{}]", list.join(", "));
            let a = json!({"n": n});
            prop_assert_eq!(holds(&source, a.clone(), 0), items.contains(&n));
            prop_assert_eq!(holds(&format!("not ({source})"), a, 0), !items.contains(&n));
        }

        /// The parser never panics, whatever it is given.
        #[test]
        fn parsing_anything_never_panics(s in "\\PC{0,64}") {
            let _ = parse(&s);
        }
    }
}
