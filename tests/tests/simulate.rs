//! `waymark simulate` (issue 13): the renewal example run over a file of events by the binary
//! alone — no server — prints each customer's timeline with the host's semantics: entry, the
//! reminders at 09:00 UTC 30, 14 and 3 days before the renewal date, and the lapse a week
//! after it; a customer who renews stops getting reminders.

use std::process::Command;
use waymark_tests::*;

/// 2026-05-01T00:00:00Z.
const MAY_1: i64 = 1_777_593_600_000;

#[test]
fn simulate_prints_each_customers_timeline_with_the_hosts_semantics() {
    let dir = tempfile::tempdir().unwrap();
    let journey = artifacts().path(&example_crate("renewal"));
    let events = dir.path().join("events.ndjson");
    // Renewal on 2026-07-01 for both; bob renews on 2026-06-20.
    let lines = [
        json!({"id": "a1", "customer": "ada", "name": "identify",
               "properties": {"traits": {"renewal_date": "2026-07-01"}}, "timestamp": MAY_1}),
        json!({"id": "a2", "customer": "ada", "name": "renewal_scheduled", "timestamp": MAY_1}),
        json!({"id": "b1", "customer": "bob", "name": "identify",
               "properties": {"traits": {"renewal_date": "2026-07-01"}}, "timestamp": MAY_1}),
        json!({"id": "b2", "customer": "bob", "name": "renewal_scheduled", "timestamp": MAY_1}),
        json!({"id": "b3", "customer": "bob", "name": "renewed",
               "timestamp": utc_midnight(2026, 6, 20)}),
    ];
    let text: Vec<String> = lines.iter().map(Value::to_string).collect();
    std::fs::write(&events, text.join("\n")).unwrap();
    let until = utc_midnight(2026, 7, 10);
    let output = Command::new(&artifacts().waymark)
        .arg("simulate")
        .arg("--journey")
        .arg(&journey)
        .arg("--events")
        .arg(&events)
        .args(["--until", &until.to_string(), "--json"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let timelines: Value = serde_json::from_slice(&output.stdout).unwrap();
    let of = |customer: &str, what: &str| -> Vec<(i64, String)> {
        timelines[customer]
            .as_array()
            .unwrap_or_else(|| panic!("no timeline for {customer}: {timelines}"))
            .iter()
            .filter(|e| e["what"] == what)
            .map(|e| {
                (
                    e["at"].as_i64().unwrap(),
                    e["detail"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let reminder = |y, m, d| utc_midnight(y, m, d) + 9 * HOUR_MS;
    let ada_sends: Vec<i64> = of("ada", "send").into_iter().map(|(at, _)| at).collect();
    assert_eq!(
        ada_sends,
        [
            reminder(2026, 6, 1),
            reminder(2026, 6, 17),
            reminder(2026, 6, 28)
        ]
    );
    assert!(
        of("ada", "send")[0].1.contains("\"days_before\":30"),
        "{timelines}"
    );
    assert_eq!(of("ada", "entered"), [(MAY_1, "version 1".to_string())]);
    assert_eq!(
        of("ada", "exited"),
        [(reminder(2026, 7, 8), "not_renewed".to_string())]
    );
    // Bob renewed on 06-20: his 3-day reminder never went, and his run ended then.
    let bob_sends: Vec<i64> = of("bob", "send").into_iter().map(|(at, _)| at).collect();
    assert_eq!(bob_sends, [reminder(2026, 6, 1), reminder(2026, 6, 17)]);
    assert_eq!(
        of("bob", "exited"),
        [(utc_midnight(2026, 6, 20), "exit_event:renewed".to_string())]
    );
}

#[test]
fn simulate_refuses_a_file_that_is_not_events() {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events.ndjson");
    std::fs::write(&events, "{\"customer\": \"ada\"}\n").unwrap();
    let output = Command::new(&artifacts().waymark)
        .arg("simulate")
        .arg("--journey")
        .arg(artifacts().path(&example_crate("renewal")))
        .arg("--events")
        .arg(&events)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("line 1"), "{stderr}");
}
