//! The journeys of `examples/` end to end: each uploaded to the real server, sending through
//! the webhook adapter registered as `email` (and `sms`) into one loopback sink, moved along by
//! the manual clock. Each test asserts on what the sink received, what the API shows of the
//! customers, and what the journey report says.

use waymark_tests::*;

const EMAIL: &str = "email";
const SMS: &str = "sms";

/// How many deliveries of `template` to `customer` arrived through `channel`.
fn count_via(received: &[Received], channel: &str, template: &str, customer: &str) -> usize {
    received
        .iter()
        .filter(|r| r.channel() == channel && r.is(template, customer))
        .count()
}

/// Moves the manual clock to `at` (which must not be in the past); returns the new now.
async fn advance_to(admin: &Api, at: i64) -> i64 {
    let now = admin.clock_now().await;
    assert!(at >= now, "cannot move the clock back from {now} to {at}");
    admin.advance_clock(at - now).await
}

fn timer_due(e: &Enrollment, name: &str) -> i64 {
    e.timer(name)
        .unwrap_or_else(|| panic!("no timer {name}: {e:?}"))
        .due
}

// ---------------------------------------------------------------------------------------------
// guided-onboarding
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn guided_onboarding_nudges_each_stall_and_hands_repeat_stallers_to_customer_success() {
    // Its CS handoff also goes to `slack` and `crm` (sinks here; the real plugins in crm.rs).
    let world = Example::start("guided-onboarding", &[EMAIL, "slack", "crm"]).await;
    let (api, admin) = (world.api(), world.admin());
    // Ada logs in at once; bob and cyd never do anything.
    world
        .post(&[
            event("ada-signed-up", "ada", "signed_up"),
            event("bob-signed-up", "bob", "signed_up"),
            event("cyd-signed-up", "cyd", "signed_up"),
            event("ada-logged-in", "ada", "logged_in"),
        ])
        .await;
    for customer in ["ada", "bob", "cyd"] {
        world.delivered(EMAIL, "welcome", customer).await;
    }
    world
        .wait_for("ada", "first_login reached", |e| {
            e.milestone("first_login").is_some()
        })
        .await;

    // Two days: bob and cyd stall on first_login and are nudged for it.
    admin.advance_clock(2 * DAY_MS).await;
    for customer in ["bob", "cyd"] {
        let nudge = world.delivered(EMAIL, "nudge_first_login", customer).await;
        assert_eq!(nudge.payload()["milestone"], "first_login");
        assert_eq!(nudge.payload()["stalls"], 1);
    }
    assert!(
        api.tasks(TaskQuery {
            queue: Some("cs".into()),
            ..TaskQuery::default()
        })
        .await
        .is_empty(),
        "one stall hands nothing off"
    );

    // Another window stuck: the second nudge, and a task in the cs queue for each.
    admin.advance_clock(2 * DAY_MS).await;
    let tasks = wait_for_some("two open cs tasks", || async {
        let tasks = api
            .tasks(TaskQuery {
                status: Some(TaskStatus::Open),
                queue: Some("cs".into()),
                limit: None,
            })
            .await;
        (tasks.len() == 2).then_some(tasks)
    })
    .await;
    let task_of = |customer: &str| {
        tasks
            .iter()
            .find(|t| t.customer == customer)
            .unwrap_or_else(|| panic!("no task for {customer}: {tasks:?}"))
            .clone()
    };
    let bob_task = task_of("bob");
    assert_eq!(bob_task.journey, "guided-onboarding");
    assert_eq!(bob_task.reason, "stalled 2 times; stuck before first_login");
    assert_eq!(bob_task.priority, 1);
    let posted = world.delivered("slack", "cs_handoff", "bob").await;
    assert_eq!(
        posted.payload()["text"],
        "Onboarding handoff: bob stalled 2 times; stuck before first_login"
    );
    let crm_task = world.delivered("crm", "cs_handoff_task", "bob").await;
    assert_eq!(crm_task.payload()["subject"], "Help bob onboard");
    world
        .sink
        .wait_for("bob's second nudge", |r| {
            count_via(r, EMAIL, "nudge_first_login", "bob") == 2
        })
        .await;

    // Two more days: ada, logged in at the start, stalls on first_value (a 5-day window) and
    // is nudged for it; bob stalls a third time, but his task is open: nothing is sent to him.
    admin.advance_clock(2 * DAY_MS).await;
    let nudge = world.delivered(EMAIL, "nudge_first_value", "ada").await;
    assert_eq!(nudge.payload()["stalls"], 1);
    let bob = world
        .wait_for("bob", "a third stall", |e| e.stalls.len() == 3)
        .await;
    assert_eq!(bob.stalled_on.as_deref(), Some("first_login"));
    let messages = api.customer("bob").await.expect("bob").messages;
    let nudges = messages
        .iter()
        .filter(|m| m.template == "nudge_first_login")
        .count();
    assert_eq!(
        nudges, 2,
        "a stall while handed off sends nothing: {messages:#?}"
    );

    // Customer success resolves both tasks: bob gets a follow-up, cyd is given up on.
    let id = bob_task.id.as_str();
    let claimed = api.claim_task(id, "grace@cs").await;
    assert_eq!(claimed.status, TaskStatus::Claimed);
    api.resolve_task(id, "call booked", json!({ "note": "walked through login" }))
        .await;
    let follow_up = world.delivered(EMAIL, "cs_follow_up", "bob").await;
    assert_eq!(follow_up.payload()["resolution"], "call booked");
    assert_eq!(follow_up.payload()["next_milestone"], "first_login");
    let cyd_task = task_of("cyd");
    api.resolve_task(&cyd_task.id, "churned", json!({})).await;
    let cyd = world
        .wait_for("cyd", "exited", |e| e.status == EnrollmentStatus::Exited)
        .await;
    assert_eq!(cyd.exit_reason.as_deref(), Some("cs_churned"));

    // Bob and ada go all the way: the goal completes them, with every milestone recorded.
    world
        .post(&[
            event("bob-logged-in", "bob", "logged_in"),
            event("bob-first-value", "bob", "first_value"),
            event("bob-second", "bob", "second_use_case"),
            event("ada-second", "ada", "second_use_case"),
        ])
        .await;
    for customer in ["ada", "bob"] {
        let e = world
            .wait_for(customer, "completed", |e| {
                e.status == EnrollmentStatus::Completed
            })
            .await;
        let reached: Vec<&str> = e.milestones.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(reached, ["first_login", "first_value", "second_use_case"]);
        assert!(e.stalled_on.is_none(), "progress clears the stall: {e:?}");
    }

    let report = world.report().await;
    let overall = &report["overall"];
    assert_eq!(overall["entered"], 3, "{report}");
    assert_eq!(overall["completed"], 2);
    assert_eq!(overall["exited_by_reason"], json!({ "cs_churned": 1 }));
    assert_eq!(overall["stalled_ever"], 3);
    assert_eq!(overall["stalled_now"], 0);
    let reached: Vec<(&str, i64)> = overall["milestones"]
        .as_array()
        .expect("milestones")
        .iter()
        .map(|m| (m["name"].as_str().unwrap(), m["reached"].as_i64().unwrap()))
        .collect();
    assert_eq!(
        reached,
        [
            ("first_login", 2),
            ("first_value", 2),
            ("second_use_case", 2)
        ]
    );
    // Welcomes 3, first-login nudges 2 + 2, ada's first-value nudge, bob's follow-up.
    assert_eq!(overall["channels"][EMAIL]["sent"], 9, "{report}");
    // One handoff each for bob and cyd, posted to Slack and opened as a CRM task.
    assert_eq!(overall["channels"]["slack"]["sent"], 2, "{report}");
    assert_eq!(overall["channels"]["crm"]["sent"], 2, "{report}");
}

// ---------------------------------------------------------------------------------------------
// win-back
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn win_back_emails_then_texts_the_unresponsive_and_lets_returning_customers_go() {
    let world = Example::start("win-back", &[EMAIL, SMS]).await;
    let (api, admin) = (world.api(), world.admin());
    // Seen once, then nothing for 30 days: the host's inactivity trigger enters them.
    let seen_at = admin.clock_now().await;
    world
        .post(&[
            event("ada-seen", "ada", "page_viewed"),
            event("bob-seen", "bob", "page_viewed"),
            event("cyd-seen", "cyd", "page_viewed"),
        ])
        .await;
    for customer in ["ada", "bob", "cyd"] {
        wait_for_customer(&api, customer).await;
    }
    admin.advance_clock(30 * DAY_MS).await;
    let mut emails = Vec::new();
    for customer in ["ada", "bob", "cyd"] {
        emails.push(world.delivered(EMAIL, "win_back", customer).await);
    }
    assert_eq!(emails[0].path, "/email");
    assert_eq!(emails[0].payload()["last_seen_at"], seen_at);

    // Ada opens her email: her SMS is called off. Cyd logs in: the exit event ends his run.
    let message_id = emails[0].idempotency_key().expect("a message id");
    world
        .post(&[
            event_with(
                "ada-opened",
                "ada",
                "opened",
                json!({ "message_id": message_id }),
            ),
            event("cyd-logged-in", "cyd", "logged_in"),
        ])
        .await;
    let ada = world
        .wait_for("ada", "engaged without a pending SMS", |e| {
            e.milestone("email_engaged").is_some() && e.timer("sms_fallback").is_none()
        })
        .await;
    assert_eq!(ada.channels[EMAIL].opened, 1);
    let cyd = world
        .wait_for("cyd", "exited", |e| e.status == EnrollmentStatus::Exited)
        .await;
    assert_eq!(cyd.exit_reason.as_deref(), Some("exit_event:logged_in"));
    assert!(cyd.timers.is_empty(), "{cyd:?}");

    // Three days on, only bob, who did nothing, gets the SMS. Ada's and cyd's SMS timers were
    // gone before the clock moved, so bob's arrival is enough to know theirs never fire.
    admin.advance_clock(3 * DAY_MS).await;
    let sms = world.delivered(SMS, "win_back_sms", "bob").await;
    assert_eq!(sms.path, "/sms");
    let received = world.sink.requests();
    for customer in ["ada", "cyd"] {
        assert_eq!(
            count_via(&received, SMS, "win_back_sms", customer),
            0,
            "{}",
            describe(&received)
        );
    }

    // Cyd lapses again: thirty days after his login, re-entry after exit starts a second run.
    // (Ada's and bob's runs give up meanwhile; opens, timers and delivery reports are not
    // activity, so neither lapses again.)
    admin.advance_clock(27 * DAY_MS).await;
    wait_for_some("cyd's second win-back email", || async {
        let received = world.sink.requests();
        (count_via(&received, EMAIL, "win_back", "cyd") == 2).then_some(())
    })
    .await;
    let runs: Vec<u32> = api
        .customer("cyd")
        .await
        .expect("cyd")
        .enrollments_in("win-back")
        .iter()
        .map(|e| e.run)
        .collect();
    assert_eq!(runs, [1, 2]);

    // Cyd's second run texts him three days later, like bob's did.
    admin.advance_clock(3 * DAY_MS).await;
    world
        .sink
        .wait_for("cyd's SMS of his second run", |r| {
            count_via(r, SMS, "win_back_sms", "cyd") == 1
        })
        .await;

    // Two weeks after their last message (ada's open, bob's and cyd's SMS), all are given up on.
    admin.advance_clock(14 * DAY_MS).await;
    for customer in ["ada", "bob"] {
        let e = world
            .wait_for(customer, "exited", |e| e.status == EnrollmentStatus::Exited)
            .await;
        assert_eq!(e.exit_reason.as_deref(), Some("no_response"));
    }
    world
        .wait_for("cyd", "second run given up", |e| {
            e.run == 2 && e.status == EnrollmentStatus::Exited
        })
        .await;

    let report = world.report().await;
    let overall = &report["overall"];
    assert_eq!(overall["entered"], 4, "{report}");
    assert_eq!(
        overall["exited_by_reason"],
        json!({ "exit_event:logged_in": 1, "no_response": 3 })
    );
    assert_eq!(overall["milestones"][0]["name"], "email_engaged");
    assert_eq!(overall["milestones"][0]["reached"], 1);
    assert_eq!(overall["channels"][EMAIL]["sent"], 4);
    assert_eq!(overall["channels"][EMAIL]["opened"], 1);
    assert_eq!(
        overall["channels"][SMS]["sent"], 2,
        "bob's, and cyd's second run's"
    );
}

// ---------------------------------------------------------------------------------------------
// renewal
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn win_back_switches_to_sms_at_once_when_the_email_fails_for_good() {
    let world = Example::start("win-back", &[EMAIL, SMS]).await;
    // The email provider refuses the address: a 4xx is a permanent failure.
    world.sink.respond_next(1, StatusCode::GONE);
    world.post(&[event("dee-seen", "dee", "page_viewed")]).await;
    wait_for_customer(&world.api(), "dee").await;
    // Thirty quiet days enter her (the host's inactivity trigger).
    world.admin().advance_clock(30 * DAY_MS).await;
    // No further clock movement: the SMS comes from the failed email's delivery report, not
    // the timer.
    let sms = world.delivered(SMS, "win_back_sms", "dee").await;
    assert_eq!(sms.path, "/sms");
    let dee = world
        .wait_for("dee", "the fallback timer called off", |e| {
            e.timer("sms_fallback").is_none() && e.timer("give_up").is_some()
        })
        .await;
    assert_eq!(dee.channels[EMAIL].failed, 1, "{dee:?}");
    assert_eq!(dee.channels[SMS].sent, 1, "{dee:?}");
    let received = world.sink.requests();
    assert_eq!(
        received.iter().filter(|r| r.channel() == SMS).count(),
        1,
        "{}",
        describe(&received)
    );
}

#[tokio::test]
async fn renewal_reminds_at_nine_local_30_14_and_3_days_before_until_renewed() {
    let world = Example::start("renewal", &[EMAIL]).await;
    let (api, admin) = (world.api(), world.admin());
    let start = admin.clock_now().await;
    let renewal_date = utc_date_string(start + 40 * DAY_MS);
    let (y, m, d) = utc_date(start + 40 * DAY_MS);
    let renewal_midnight = utc_midnight(y, m, d);
    world
        .post(&[
            identify(
                "ada-traits",
                "ada",
                json!({ "renewal_date": renewal_date, "timezone": "Asia/Tokyo" }),
            ),
            event("ada-scheduled", "ada", "renewal_scheduled"),
            identify("bob-traits", "bob", json!({ "renewal_date": renewal_date })),
            event("bob-scheduled", "bob", "renewal_scheduled"),
        ])
        .await;

    // 09:00 in Tokyo is midnight UTC; bob, without a zone, is reminded at 09:00 UTC.
    let ada = world
        .wait_for("ada", "reminders planned", |e| e.timer("lapsed").is_some())
        .await;
    let bob = world
        .wait_for("bob", "reminders planned", |e| e.timer("lapsed").is_some())
        .await;
    for n in [30, 14, 3] {
        let name = format!("remind_{n}");
        assert_eq!(
            timer_due(&ada, &name),
            renewal_midnight - n * DAY_MS,
            "{name}"
        );
        assert_eq!(
            timer_due(&bob, &name),
            renewal_midnight - n * DAY_MS + 9 * HOUR_MS,
            "{name}"
        );
    }

    // Ada's 30-day reminder; bob's is still nine hours away.
    advance_to(&admin, renewal_midnight - 30 * DAY_MS).await;
    let reminder = world.delivered(EMAIL, "renewal_reminder", "ada").await;
    assert_eq!(reminder.payload()["days_before"], 30);
    assert_eq!(reminder.payload()["renewal_date"], renewal_date.as_str());
    assert_eq!(count(&world.sink.requests(), "renewal_reminder", "bob"), 0);
    admin.advance_clock(9 * HOUR_MS).await;
    world.delivered(EMAIL, "renewal_reminder", "bob").await;

    // Bob renews: the exit event ends his run and cancels his remaining reminders.
    world.post(&[event("bob-renewed", "bob", "renewed")]).await;
    let bob = world
        .wait_for("bob", "exited", |e| e.status == EnrollmentStatus::Exited)
        .await;
    assert_eq!(bob.exit_reason.as_deref(), Some("exit_event:renewed"));
    assert!(bob.timers.is_empty(), "{bob:?}");

    // The 14-day reminder reaches ada only (bob had no timer left when the clock moved).
    advance_to(&admin, renewal_midnight - 14 * DAY_MS + 9 * HOUR_MS).await;
    wait_for_some("ada's 14-day reminder", || async {
        world
            .sink
            .requests()
            .into_iter()
            .find(|r| r.is("renewal_reminder", "ada") && r.payload()["days_before"] == 14)
    })
    .await;

    // Ada's renewal moves a week later: an identify re-plans every reminder still ahead of the
    // new date, the 14-day one included.
    let moved_date = utc_date_string(renewal_midnight + 7 * DAY_MS);
    world
        .post(&[identify(
            "ada-moved",
            "ada",
            json!({ "renewal_date": moved_date }),
        )])
        .await;
    let ada = world
        .wait_for("ada", "the 3-day reminder moved", |e| {
            e.timer("remind_3")
                .is_some_and(|t| t.due == renewal_midnight + 4 * DAY_MS)
        })
        .await;
    assert_eq!(timer_due(&ada, "remind_14"), renewal_midnight - 7 * DAY_MS);
    assert!(ada.timer("remind_30").is_none(), "already past: {ada:?}");
    let reminder_of_ada = |days_before: i64, nth: usize| {
        let world = &world;
        async move {
            wait_for_some(
                &format!("ada's {days_before}-day reminder #{nth}"),
                || async {
                    world
                        .sink
                        .requests()
                        .into_iter()
                        .filter(|r| {
                            r.is("renewal_reminder", "ada")
                                && r.payload()["days_before"] == days_before
                        })
                        .nth(nth - 1)
                },
            )
            .await
        }
    };
    advance_to(&admin, renewal_midnight - 7 * DAY_MS).await;
    let again = reminder_of_ada(14, 2).await;
    assert_eq!(again.payload()["renewal_date"], moved_date.as_str());
    advance_to(&admin, renewal_midnight + 4 * DAY_MS).await;
    let last = reminder_of_ada(3, 1).await;
    assert_eq!(last.payload()["renewal_date"], moved_date.as_str());

    world.post(&[event("ada-renewed", "ada", "renewed")]).await;
    world
        .wait_for("ada", "exited", |e| e.status == EnrollmentStatus::Exited)
        .await;
    let received = world.sink.requests();
    let ada_days: Vec<&Value> = received
        .iter()
        .filter(|r| r.is("renewal_reminder", "ada"))
        .map(|r| &r.payload()["days_before"])
        .collect();
    assert_eq!(ada_days, [30, 14, 14, 3], "{}", describe(&received));
    assert_eq!(
        count(&received, "renewal_reminder", "bob"),
        1,
        "{}",
        describe(&received)
    );
    let messages = api.customer("bob").await.expect("bob").messages;
    assert_eq!(messages.len(), 1, "{messages:#?}");

    let report = world.report().await;
    let overall = &report["overall"];
    assert_eq!(overall["entered"], 2, "{report}");
    assert_eq!(
        overall["exited_by_reason"],
        json!({ "exit_event:renewed": 2 })
    );
    assert_eq!(overall["channels"][EMAIL]["sent"], 5);
}

// ---------------------------------------------------------------------------------------------
// post-purchase
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn post_purchase_runs_each_order_on_its_own_keyed_by_order_id() {
    let world = Example::start("post-purchase", &[EMAIL]).await;
    let (api, admin) = (world.api(), world.admin());
    let order = |id: &str, order_id: &str| {
        event_with(
            id,
            "ada",
            "order_placed",
            json!({ "order_id": order_id, "category": "tents" }),
        )
    };
    let about = |name: &str, id: &str, order_id: &str| {
        event_with(id, "ada", name, json!({ "order_id": order_id }))
    };
    let for_order = |r: &Received, template: &str, order_id: &str| {
        r.is(template, "ada") && r.payload()["order_id"] == order_id
    };

    world.post(&[order("o1", "A-1")]).await;
    wait_for_some("A-1's thank-you", || async {
        world
            .sink
            .requests()
            .into_iter()
            .find(|r| for_order(r, "thank_you", "A-1"))
    })
    .await;

    // Two days later a second order, behind a retry of the first under a new event id: the
    // retry starts nothing, the new order starts its own run beside the first.
    admin.advance_clock(2 * DAY_MS).await;
    world
        .post(&[order("o1-retry", "A-1"), order("o2", "A-2")])
        .await;
    wait_for_some("A-2's thank-you", || async {
        world
            .sink
            .requests()
            .into_iter()
            .find(|r| for_order(r, "thank_you", "A-2"))
    })
    .await;
    let ada = api.customer("ada").await.expect("ada");
    let runs: Vec<(u32, Option<&str>)> = ada
        .enrollments_in("post-purchase")
        .iter()
        .map(|e| (e.run, e.key.as_deref()))
        .collect();
    assert_eq!(runs, [(1, Some("A-1")), (2, Some("A-2"))]);
    let thanks = ada.messages_with_template("thank_you");
    assert_eq!(thanks.len(), 2, "{thanks:#?}");
    assert_ne!(thanks[0].id, thanks[1].id, "each run has its own keys");

    // A week after A-1: its review request, and only its.
    admin.advance_clock(5 * DAY_MS).await;
    wait_for_some("A-1's review request", || async {
        world
            .sink
            .requests()
            .into_iter()
            .find(|r| for_order(r, "review_request", "A-1"))
    })
    .await;

    // Ada reviews A-2 early, then returns it: that run records the milestone and exits;
    // A-1's run does not notice.
    world
        .post(&[
            about("review_submitted", "r2", "A-2"),
            about("order_returned", "ret2", "A-2"),
        ])
        .await;
    let second = wait_for_some("A-2's run to exit", || async {
        let ada = api.customer("ada").await?;
        let run = ada.enrollments_in("post-purchase").get(1).copied()?.clone();
        (run.status == EnrollmentStatus::Exited).then_some(run)
    })
    .await;
    assert_eq!(second.exit_reason.as_deref(), Some("order_returned"));
    assert!(second.milestone("reviewed").is_some(), "{second:?}");

    // Two weeks after A-1: its cross-sell completes it. A-2's timers went with its exit.
    admin.advance_clock(7 * DAY_MS).await;
    let cross_sell = wait_for_some("A-1's cross-sell", || async {
        world
            .sink
            .requests()
            .into_iter()
            .find(|r| for_order(r, "cross_sell", "A-1"))
    })
    .await;
    assert_eq!(cross_sell.payload()["category"], "tents");
    let first = wait_for_some("A-1's run to complete", || async {
        let ada = api.customer("ada").await?;
        let run = ada
            .enrollments_in("post-purchase")
            .first()
            .copied()?
            .clone();
        (run.status == EnrollmentStatus::Completed).then_some(run)
    })
    .await;
    assert!(first.milestone("reviewed").is_none());
    let received = world.sink.requests();
    let templates: Vec<(String, Value)> = received
        .iter()
        .map(|r| {
            (
                r.template().unwrap_or("-").to_string(),
                r.payload()["order_id"].clone(),
            )
        })
        .collect();
    assert_eq!(
        templates,
        [
            ("thank_you".to_string(), json!("A-1")),
            ("thank_you".to_string(), json!("A-2")),
            ("review_request".to_string(), json!("A-1")),
            ("cross_sell".to_string(), json!("A-1")),
        ],
        "{}",
        describe(&received)
    );

    let report = world.report().await;
    let overall = &report["overall"];
    assert_eq!(overall["entered"], 2, "{report}");
    assert_eq!(overall["completed"], 1);
    assert_eq!(overall["exited_by_reason"], json!({ "order_returned": 1 }));
    assert_eq!(overall["milestones"][0]["reached"], 1);
}

// ---------------------------------------------------------------------------------------------
// birthday
// ---------------------------------------------------------------------------------------------

/// The date of `year` on which a `month`-`day` birthday is celebrated (Feb 29 → Feb 28 in
/// common years), at midnight UTC.
fn birthday_midnight(year: i64, month: u32, day: u32) -> i64 {
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    if (month, day) == (2, 29) && !leap {
        utc_midnight(year, 2, 28)
    } else {
        utc_midnight(year, month, day)
    }
}

#[tokio::test]
async fn birthday_greets_at_nine_in_the_customers_zone_and_rearms_every_year() {
    let world = Example::start("birthday", &[EMAIL]).await;
    let admin = world.admin();
    let start = admin.clock_now().await;
    let (year, month, day) = utc_date(start + 10 * DAY_MS);
    let midnight = utc_midnight(year, month, day);
    world
        .post(&[
            identify(
                "ada-traits",
                "ada",
                // 1992 was a leap year, so even a February 29 birthday is a real date.
                json!({ "birthday": format!("1992-{month:02}-{day:02}"), "timezone": "Asia/Tokyo" }),
            ),
            identify(
                "bob-traits",
                "bob",
                json!({ "birthday": format!("{month:02}-{day:02}") }),
            ),
            identify("cyd-traits", "cyd", json!({ "plan": "pro" })),
        ])
        .await;

    // 09:00 in Tokyo is midnight UTC; bob has no zone, so his is 09:00 UTC.
    let ada = world
        .wait_for("ada", "armed", |e| e.timer("birthday").is_some())
        .await;
    assert_eq!(timer_due(&ada, "birthday"), midnight);
    let bob = world
        .wait_for("bob", "armed", |e| e.timer("birthday").is_some())
        .await;
    assert_eq!(timer_due(&bob, "birthday"), midnight + 9 * HOUR_MS);
    // Cyd is enrolled without a birthday, so nothing is armed until one arrives.
    let cyd = world.wait_for("cyd", "enrolled", |_| true).await;
    assert!(cyd.timers.is_empty(), "{cyd:?}");
    world
        .post(&[identify(
            "cyd-birthday",
            "cyd",
            json!({ "birthday": "12-24" }),
        )])
        .await;
    world
        .wait_for("cyd", "armed", |e| e.timer("birthday").is_some())
        .await;

    advance_to(&admin, midnight).await;
    let greeting = world.delivered(EMAIL, "birthday", "ada").await;
    assert_eq!(
        greeting.payload()["birthday"],
        utc_date_string(midnight).as_str()
    );
    assert_eq!(greeting.payload()["age"], year - 1992);
    assert_eq!(
        count(&world.sink.requests(), "birthday", "bob"),
        0,
        "bob's is at 09:00 UTC"
    );
    let next_year = birthday_midnight(year + 1, month, day);
    world
        .wait_for("ada", "re-armed for next year", |e| {
            e.timer("birthday").is_some_and(|t| t.due == next_year)
        })
        .await;

    admin.advance_clock(9 * HOUR_MS).await;
    let greeting = world.delivered(EMAIL, "birthday", "bob").await;
    assert_eq!(greeting.payload()["age"], Value::Null);

    // A year on, ada is greeted again, as a new message.
    advance_to(&admin, next_year).await;
    let second = wait_for_some("ada's second birthday greeting", || async {
        let received = world.sink.requests();
        let greetings: Vec<Received> = received
            .into_iter()
            .filter(|r| r.is("birthday", "ada"))
            .collect();
        (greetings.len() == 2).then_some(greetings)
    })
    .await;
    assert_eq!(second[1].payload()["age"], year + 1 - 1992);
    assert_ne!(second[0].idempotency_key(), second[1].idempotency_key());

    let report = world.report().await;
    assert_eq!(report["overall"]["entered"], 3, "{report}");
    assert_eq!(
        report["overall"]["active"], 3,
        "the journey never ends by itself"
    );
}

// ---------------------------------------------------------------------------------------------
// ab-welcome
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn ab_welcome_splits_customers_between_two_welcomes_and_reports_each_arms_funnel() {
    let world = Example::start("ab-welcome", &[EMAIL]).await;
    let (api, admin) = (world.api(), world.admin());
    let customers = ["ana", "ben", "cyd", "dee", "eli", "fay"];
    let signups: Vec<Value> = customers
        .iter()
        .map(|c| event(&format!("{c}-signed-up"), c, "signed_up"))
        .collect();
    world.post(&signups).await;

    // Each customer gets exactly one welcome, of their arm, and the arm is recorded.
    let received = world
        .sink
        .wait_for("a welcome for everyone", |r| r.len() == customers.len())
        .await;
    let mut arms: Vec<(&str, String)> = Vec::new();
    for customer in customers {
        let welcome = received
            .iter()
            .find(|r| r.customer() == Some(customer))
            .unwrap_or_else(|| panic!("no welcome for {customer}:\n{}", describe(&received)));
        let arm = welcome.payload()["arm"].as_str().expect("arm").to_string();
        assert_eq!(welcome.template(), Some(format!("welcome_{arm}").as_str()));
        let enrollment = world.wait_for(customer, "enrolled", |_| true).await;
        assert_eq!(
            enrollment.variants,
            [VariantAssignment {
                experiment: "welcome_copy".into(),
                arm: arm.clone(),
            }]
        );
        arms.push((customer, arm));
    }
    let in_arm = |arm: &str| -> Vec<&str> {
        arms.iter()
            .filter(|(_, a)| a == arm)
            .map(|(c, _)| *c)
            .collect()
    };
    let (control, short) = (in_arm("control"), in_arm("short"));
    assert!(
        !control.is_empty() && !short.is_empty(),
        "both arms have customers: {arms:?}"
    );

    // Everyone on the short copy activates; on the control copy, only the first.
    let activators: Vec<&str> = short.iter().chain(&control[..1]).copied().collect();
    let activations: Vec<Value> = activators
        .iter()
        .map(|c| event(&format!("{c}-activated"), c, "activated"))
        .collect();
    admin.advance_clock(HOUR_MS).await;
    world.post(&activations).await;
    for customer in &activators {
        world
            .wait_for(customer, "completed", |e| {
                e.status == EnrollmentStatus::Completed
            })
            .await;
    }
    // Two weeks on, the rest of control leaves without activating.
    admin.advance_clock(14 * DAY_MS).await;
    for customer in &control[1..] {
        world
            .wait_for(customer, "exited", |e| e.status == EnrollmentStatus::Exited)
            .await;
    }

    let report = api.report("ab-welcome").await;
    let by_arm = &report["report"]["by_arm"]["welcome_copy"];
    let keys: Vec<&String> = by_arm.as_object().expect("arms").keys().collect();
    assert_eq!(keys, ["control", "short"], "{report}");
    let funnel = |arm: &str| &by_arm[arm];
    let (n_control, n_short) = (control.len() as i64, short.len() as i64);

    assert_eq!(funnel("short")["entered"], n_short);
    assert_eq!(funnel("short")["completed"], n_short);
    assert_eq!(funnel("short")["milestones"][0]["reached"], n_short);
    assert_eq!(funnel("short")["milestones"][0]["conversion"], 1.0);
    assert_eq!(
        funnel("short")["milestones"][0]["median_time_to_reach_ms"],
        HOUR_MS
    );
    assert_eq!(funnel("short")["channels"][EMAIL]["sent"], n_short);

    assert_eq!(funnel("control")["entered"], n_control);
    assert_eq!(funnel("control")["completed"], 1);
    assert_eq!(funnel("control")["milestones"][0]["reached"], 1);
    assert_eq!(
        funnel("control")["milestones"][0]["conversion"],
        1.0 / n_control as f64
    );
    if n_control > 1 {
        assert_eq!(
            funnel("control")["exited_by_reason"],
            json!({ "not_activated": n_control - 1 })
        );
    }
    assert_eq!(funnel("control")["channels"][EMAIL]["sent"], n_control);
    assert_eq!(report["report"]["overall"]["entered"], customers.len());

    // The arms compared on the goal: conversion with its 95% interval, and which is best.
    let stats = &report["report"]["experiments"]["welcome_copy"];
    assert_eq!(
        stats["metric"],
        funnel("short")["milestones"][0]["name"],
        "{stats}"
    );
    let arm = |name: &str| &stats["arms"][name];
    assert_eq!(arm("short")["sample_size"], n_short);
    assert_eq!(arm("short")["converted"], n_short);
    assert_eq!(arm("control")["converted"], 1);
    for name in ["short", "control"] {
        let c = &arm(name)["conversion"];
        let (rate, low, high) = (
            c["rate"].as_f64().unwrap(),
            c["low"].as_f64().unwrap(),
            c["high"].as_f64().unwrap(),
        );
        assert!(
            0.0 <= low && low <= rate && rate <= high && high <= 1.0,
            "{c}"
        );
        assert_eq!(
            arm(name)["milestones"][0]["reached"],
            arm(name)["converted"]
        );
    }
    let best = |name: &str| arm(name)["probability_best"].as_f64().unwrap();
    assert!(
        (best("short") + best("control") - 1.0).abs() < 1e-9,
        "{stats}"
    );
    if n_control > 1 {
        assert!(best("short") > best("control"), "{stats}");
    }
}

// Audience triggers (issue 12)
/// Waits until the host has processed a customer's first event (their profile exists, and with
/// it their inactivity watch: both are written by the same commit).
async fn wait_for_customer(api: &Api, customer: &str) {
    let started = std::time::Instant::now();
    while api.customer(customer).await.is_none() {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "{customer} was never processed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
