//! The command-line client end to end: the real `waymark` binary run as a subprocess against a
//! real server, the way an operator types it. The import test is the issue's acceptance: 100,000
//! events from NDJSON, progress shown as plain lines (stdout is a pipe here), the import killed
//! mid-way and resumed, and nothing processed twice.

use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Instant;
use waymark_api::reports::JourneyReport;
use waymark_tests::*;

/// Customers in the import, and events per customer: `signed_up`, `first_value` (the
/// onboarding journey's goal), then 8 × `page_viewed` (routed, but to a finished enrollment:
/// the import's cost is the host's ingest rather than 100,000 guest calls).
const CUSTOMERS: usize = 10_000;
const EVENTS_PER_CUSTOMER: usize = 10;
const EVENTS: usize = CUSTOMERS * EVENTS_PER_CUSTOMER;

/// The `waymark` binary acting as one tenant (or the admin) of one server, with a private
/// home so no config file of the machine's user is read.
struct Cli {
    url: String,
    key: Option<String>,
    admin_token: Option<String>,
    home: PathBuf,
}

impl Cli {
    fn new(server: &Server, home: &Path) -> Cli {
        Cli {
            url: server.url().to_string(),
            key: None,
            admin_token: None,
            home: home.to_path_buf(),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&artifacts().waymark);
        command
            .args(args)
            .env("WAYMARK_URL", &self.url)
            .env("HOME", &self.home)
            .env("XDG_CONFIG_HOME", self.home.join(".config"))
            .env_remove("WAYMARK_KEY")
            .env_remove("WAYMARK_ADMIN_TOKEN")
            .env_remove("WAYMARK_CONFIG")
            .env_remove("WAYMARK_PROFILE")
            .stdin(Stdio::null());
        if let Some(key) = &self.key {
            command.env("WAYMARK_KEY", key);
        }
        if let Some(token) = &self.admin_token {
            command.env("WAYMARK_ADMIN_TOKEN", token);
        }
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run waymark {args:?}: {e}"))
    }

    /// Runs `args`, which must succeed; returns its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "waymark {args:?} failed ({}):\nstdout:\n{stdout}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    /// Runs `args` with `--json`; returns the parsed answer.
    fn json<T: serde::de::DeserializeOwned>(&self, args: &[&str]) -> T {
        let args: Vec<&str> = args.iter().copied().chain(["--json"]).collect();
        let stdout = self.ok(&args);
        serde_json::from_str(&stdout).unwrap_or_else(|e| {
            panic!("waymark {args:?} --json is not the answer ({e}):\n{stdout}")
        })
    }

    /// Runs `args`, which must fail; returns its stderr.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert_eq!(out.status.code(), Some(1), "waymark {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

/// A tenant with the webhook channel (posting to `sink`) and the onboarding journey, set up
/// through the CLI itself.
fn tenant_with_onboarding(server: &Server, sink: &Sink, home: &Path) -> Cli {
    let mut cli = Cli::new(server, home);
    cli.admin_token = Some(server.admin_token().to_string());
    let tenant: CreatedTenant = cli.json(&["tenant", "create", "acme"]);
    assert_eq!(tenant.name, "acme");
    cli.admin_token = None;
    cli.key = Some(tenant.api_key);
    let webhook = artifacts().path(WEBHOOK_CRATE);
    let setting = format!("url={}/webhook", sink.url());
    let channel: Channel = cli.json(&[
        "channel",
        "push",
        WEBHOOK,
        webhook.to_str().unwrap(),
        "--setting",
        &setting,
        "--allow-host",
        &sink.authority(),
    ]);
    assert_eq!(channel.allowed_hosts, [sink.authority()]);
    let onboarding = artifacts().path(ONBOARDING_CRATE);
    let pushed = cli.ok(&[
        "journey",
        "push",
        onboarding.to_str().unwrap(),
        "--name",
        ONBOARDING,
    ]);
    assert!(
        pushed.starts_with("journey onboarding version 1 "),
        "{pushed}"
    );
    cli
}

/// `CUSTOMERS` customers' events, one customer after another; no event has an id (the
/// importer derives them) except `first_value`, which carries the tenant's own.
fn write_events(path: &Path) {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for c in 0..CUSTOMERS {
        writeln!(out, r#"{{"customer":"c{c}","name":"signed_up"}}"#).unwrap();
        writeln!(
            out,
            r#"{{"id":"fv-{c}","customer":"c{c}","name":"first_value"}}"#
        )
        .unwrap();
        for page in 0..EVENTS_PER_CUSTOMER - 2 {
            writeln!(
                out,
                r#"{{"customer":"c{c}","name":"page_viewed","properties":{{"page":{page}}}}}"#
            )
            .unwrap();
        }
    }
    out.flush().unwrap();
}

/// The lines read of a progress line `progress: 23000/100000 lines ...`.
fn progress_lines(line: &str) -> Option<u64> {
    line.strip_prefix("progress: ")?
        .split('/')
        .next()?
        .parse()
        .ok()
}

/// An unlabelled counter of `/metrics`.
fn counter(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics")) as u64
}

#[derive(serde::Deserialize)]
struct ImportSummary {
    lines: u64,
    accepted: u64,
    duplicates: u64,
    accepted_now: u64,
    duplicates_now: u64,
}

#[tokio::test]
async fn an_import_of_100000_events_killed_midway_resumes_and_nothing_is_processed_twice() {
    let sink = Sink::quiet();
    // The tenant's event rate makes the import last long enough to be killed mid-way (and
    // exercises the importer's obedience to 429 Retry-After).
    let server = Server::start(ServerOptions {
        args: ["--events-per-second", "10000", "--event-burst", "10000"]
            .map(String::from)
            .to_vec(),
        ..ServerOptions::default()
    })
    .await;
    let home = tempfile::tempdir().unwrap();
    let cli = tenant_with_onboarding(&server, &sink, home.path());
    let input = home.path().join("events.ndjson");
    write_events(&input);
    let file = input.to_str().unwrap();
    // Durations are printed for the record (docs/BENCHMARKS.md-style notes), never asserted.
    let started = Instant::now();

    // First run: plain progress lines after every batch (stdout is a pipe); killed once a
    // fifth of the file is acknowledged.
    let mut child = cli
        .command(&["events", "import", file, "--progress-interval-ms", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start the import");
    let stdout = child.stdout.take().unwrap();
    let mut seen = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        seen.push(line.clone());
        if progress_lines(&line).is_some_and(|n| n >= EVENTS as u64 / 5) {
            break;
        }
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(
        !status.success(),
        "the import finished before it was killed: {seen:#?}"
    );
    let last = seen.last().and_then(|l| progress_lines(l));
    assert!(
        last.is_some_and(|n| n < EVENTS as u64),
        "expected progress lines, saw {seen:#?}"
    );
    let checkpoint: Value = serde_json::from_slice(
        &std::fs::read(home.path().join("events.ndjson.waymark-import.json")).unwrap(),
    )
    .unwrap();
    let checkpointed = checkpoint["accepted"].as_u64().unwrap();
    assert!(
        checkpointed > 0 && checkpointed < EVENTS as u64,
        "{checkpoint}"
    );
    assert_eq!(checkpoint["done"], false);

    eprintln!(
        "import: first run killed after {:?} at {checkpointed} accepted",
        started.elapsed()
    );

    // Second run: resumes where the checkpoint says and imports the rest.
    let resumed = cli.ok(&["events", "import", file, "--progress-interval-ms", "0"]);
    assert!(resumed.starts_with("resuming "), "{resumed}");
    assert!(
        resumed.lines().any(|l| progress_lines(l).is_some()),
        "{resumed}"
    );
    let summary = resumed.lines().last().unwrap();
    assert!(
        summary.starts_with(&format!("imported {file}: {EVENTS} accepted, ")),
        "every event accepted once over both runs: {summary}"
    );

    eprintln!("import: resumed and finished after {:?}", started.elapsed());

    // Once finished, a rerun sends nothing; a `--restart` resends everything under the same
    // ids, and the server answers every one `duplicate`.
    let again = cli.ok(&["events", "import", file]);
    assert!(again.contains("was imported already"), "{again}");
    let restart: ImportSummary = cli.json(&["events", "import", file, "--restart"]);
    assert_eq!(restart.lines, EVENTS as u64);
    assert_eq!(
        (restart.accepted_now, restart.duplicates_now),
        (0, EVENTS as u64)
    );
    assert_eq!((restart.accepted, restart.duplicates), (0, EVENTS as u64));

    eprintln!(
        "import: --restart run finished after {:?}",
        started.elapsed()
    );

    // The server accepted each event exactly once, whatever was resent.
    let admin = server.api();
    let metrics = admin.metrics().await;
    assert_eq!(
        counter(&metrics, "waymark_events_accepted_total"),
        EVENTS as u64
    );
    assert!(counter(&metrics, "waymark_events_duplicate_total") >= EVENTS as u64);

    // Every customer entered once, reached the goal once, and got one welcome.
    let api = server.api().with_key(cli.key.as_deref().unwrap());
    wait_until("every customer completed and got a welcome", || async {
        let report = api.report(ONBOARDING).await;
        let overall = &report["report"]["overall"];
        overall["completed"] == CUSTOMERS as u64
            && overall["channels"][WEBHOOK]["delivered"] == CUSTOMERS as u64
    })
    .await;
    assert_eq!(sink.count(), CUSTOMERS as u64);
    eprintln!(
        "import: every enrollment completed and delivered after {:?}",
        started.elapsed()
    );
    let report: JourneyReport = cli.json(&["journey", "report", ONBOARDING]);
    let overall = &report.report.overall;
    assert_eq!(overall.entered, CUSTOMERS as u64);
    assert_eq!(overall.completed, CUSTOMERS as u64);
    assert_eq!(overall.milestones[0].name, "first_value");
    assert_eq!(overall.milestones[0].reached, CUSTOMERS as u64);
    assert_eq!(
        serde_json::to_value(&report).unwrap(),
        api.report(ONBOARDING).await,
        "--json prints the API's report"
    );

    // The report as a person reads it: tables.
    let table = cli.ok(&["journey", "report", ONBOARDING]);
    let row = |first: &str| {
        table
            .lines()
            .find(|l| l.split('|').nth(1).is_some_and(|c| c.trim() == first))
            .unwrap_or_else(|| panic!("no row {first:?} in\n{table}"))
            .split('|')
            .map(|c| c.trim().to_string())
            .collect::<Vec<_>>()
    };
    let header = row("group");
    let overall_row = row("overall");
    let column = |name: &str| header.iter().position(|h| h == name).unwrap();
    assert_eq!(overall_row[column("entered")], CUSTOMERS.to_string());
    assert_eq!(overall_row[column("completed")], CUSTOMERS.to_string());
    assert_eq!(overall_row[column("goal conversion")], "100.0%");
    assert_eq!(row("first_value")[2], CUSTOMERS.to_string());
}

#[tokio::test]
async fn commands_print_tables_or_json_and_api_errors_as_code_and_message() {
    let sink = Sink::start();
    let server = Server::start(ServerOptions::default()).await;
    let home = tempfile::tempdir().unwrap();
    let cli = tenant_with_onboarding(&server, &sink, home.path());

    // A CSV import with its own ids, then one event sent from flags.
    let csv = home.path().join("signups.csv");
    std::fs::write(
        &csv,
        "id,customer,name,plan\ns-ada,ada,signed_up,pro\ns-bob,bob,signed_up,\n",
    )
    .unwrap();
    let summary: ImportSummary = cli.json(&["events", "import", csv.to_str().unwrap()]);
    assert_eq!((summary.accepted, summary.duplicates), (2, 0));
    let sent = cli.ok(&[
        "events",
        "send",
        "--customer",
        "ada",
        "--name",
        "first_value",
        "--id",
        "fv-ada",
    ]);
    assert_eq!(sent.trim(), "event fv-ada accepted");
    let again: EventsAccepted = cli.json(&[
        "events",
        "send",
        "--event",
        r#"{"id":"fv-ada","customer":"ada","name":"first_value"}"#,
    ]);
    assert_eq!(again.results[0].status, EventStatus::Duplicate);

    let api = server.api().with_key(cli.key.as_deref().unwrap());
    api.wait_for_enrollment("ada", ONBOARDING, "completed", |e| {
        e.status == EnrollmentStatus::Completed
    })
    .await;
    let ada: Customer = cli.json(&["customer", "show", "ada"]);
    assert_eq!(ada.enrollments[0].status, EnrollmentStatus::Completed);
    let shown = cli.ok(&["customer", "show", "ada"]);
    assert!(
        shown
            .lines()
            .any(|l| l.contains("| onboarding") && l.contains("completed")),
        "{shown}"
    );

    // A line the server refuses stops the import there; once it is fixed, the import resumes
    // at that line (what was acknowledged is not sent again), and events appended later are
    // imported by the next run. A change to what was acknowledged is refused.
    let log = home.path().join("log.ndjson");
    let good = |c: &str| format!("{{\"customer\":\"{c}\",\"name\":\"visited\"}}\n");
    std::fs::write(
        &log,
        [
            good("l1"),
            good("l2"),
            "{\"customer\":\"\",\"name\":\"visited\"}\n".into(),
        ]
        .concat(),
    )
    .unwrap();
    let log_file = log.to_str().unwrap();
    let import = ["events", "import", log_file, "--batch-size", "1"];
    let err = cli.fails(&import);
    assert!(err.starts_with("error: invalid_event: line 3: "), "{err}");
    std::fs::write(&log, [good("l1"), good("l2"), good("l3")].concat()).unwrap();
    let fixed = cli.ok(&import);
    assert!(fixed.contains("(line 2)"), "{fixed}");
    assert!(
        fixed
            .trim_end()
            .ends_with(": 3 accepted, 0 duplicates (1 accepted and 0 duplicates in this run)"),
        "{fixed}"
    );
    std::fs::write(
        &log,
        [good("l1"), good("l2"), good("l3"), good("l4")].concat(),
    )
    .unwrap();
    let appended: ImportSummary = cli.json(&import);
    assert_eq!(
        (appended.accepted, appended.accepted_now, appended.lines),
        (4, 1, 4)
    );
    std::fs::write(
        &log,
        [good("l0"), good("l2"), good("l3"), good("l4")].concat(),
    )
    .unwrap();
    let err = cli.fails(&import);
    assert!(err.starts_with("error: checkpoint_mismatch: "), "{err}");

    let list: waymark_api::journeys::JourneyList = cli.json(&["journey", "list"]);
    assert_eq!(list.journeys[0].name, ONBOARDING);
    let show = cli.ok(&["journey", "show", ONBOARDING]);
    assert!(show.contains("first_value"), "{show}");
    // Versions: a draft, a rollout to a share, a rollback, as a person reads them.
    let onboarding = artifacts().path(ONBOARDING_CRATE);
    let onboarding = onboarding.to_str().unwrap();
    let draft = cli.ok(&[
        "journey", "push", onboarding, "--name", ONBOARDING, "--draft",
    ]);
    assert!(
        draft.starts_with("journey onboarding version 2 "),
        "{draft}"
    );
    assert!(draft.trim_end().ends_with(", a draft"), "{draft}");
    let rolling = cli.ok(&["journey", "promote", ONBOARDING, "2", "--share", "25"]);
    assert_eq!(
        rolling.trim(),
        "journey onboarding: version 1 live, version 2 rolling out to 25% of new entrants"
    );
    let table = cli.ok(&["journey", "list"]);
    assert!(table.contains("2 to 25%"), "{table}");
    let back: waymark_api::journeys::JourneyRollout =
        cli.json(&["journey", "rollback", ONBOARDING]);
    assert_eq!((back.live_version, back.candidate), (Some(1), None));
    let err = cli.fails(&["journey", "rollback", ONBOARDING]);
    assert!(err.starts_with("error: conflict: "), "{err}");
    let tasks: waymark_api::tasks::TaskList = cli.json(&["tasks", "list", "--status", "open"]);
    assert!(tasks.tasks.is_empty());
    let dead: waymark_api::dead_letters::DeadLetters = cli.json(&["dead-letters", "list"]);
    assert!(dead.dead_letters.is_empty());

    // Errors: the API's code and message, exit code 1.
    let err = cli.fails(&["customer", "show", "nobody"]);
    assert!(err.starts_with("error: not_found: "), "{err}");
    let err = cli.fails(&["tasks", "claim", "task_nope", "--assignee", "me"]);
    assert!(err.starts_with("error: not_found: "), "{err}");
    let err = cli.fails(&["dead-letters", "retry"]);
    assert!(err.starts_with("error: invalid_input: "), "{err}");
    let keyless = Cli::new(&server, home.path());
    let err = keyless.fails(&["journey", "list"]);
    assert!(err.starts_with("error: config: no credential"), "{err}");
    let mut wrong = Cli::new(&server, home.path());
    wrong.key = Some("wrong".into());
    let err = wrong.fails(&["journey", "list"]);
    assert!(err.starts_with("error: unauthorized: "), "{err}");
}

#[tokio::test]
async fn journey_push_of_a_crate_directory_builds_it_for_wasm32_wasip2_and_uploads_it() {
    let server = Server::start(ServerOptions::default()).await;
    let home = tempfile::tempdir().unwrap();
    let mut cli = Cli::new(&server, home.path());
    cli.admin_token = Some(server.admin_token().to_string());
    let tenant: CreatedTenant = cli.json(&["tenant", "create", "builder"]);
    cli.key = Some(tenant.api_key);
    // `cargo build --release --target wasm32-wasip2` of examples/onboarding, named after its
    // directory.
    let dir = workspace_root().join("examples").join("onboarding");
    let uploaded: UploadedJourney = cli.json(&["journey", "push", dir.to_str().unwrap()]);
    assert_eq!(uploaded.name, "onboarding");
    assert_eq!(uploaded.version, 1);
    assert_eq!(uploaded.spec.goal.as_deref(), Some("first_value"));
    // A directory that is no crate is refused before anything is sent.
    let err = cli.fails(&["journey", "push", home.path().to_str().unwrap()]);
    assert!(err.starts_with("error: invalid_input: "), "{err}");
}

#[tokio::test]
async fn an_import_waits_out_the_servers_rate_limit_and_loses_nothing() {
    let sink = Sink::quiet();
    // 1,000 events at once, then 100 a second: the third batch of 500 is answered 429 with
    // Retry-After, and the importer waits and sends it again.
    let server = Server::start(ServerOptions {
        args: ["--events-per-second", "100", "--event-burst", "1000"]
            .map(String::from)
            .to_vec(),
        ..ServerOptions::default()
    })
    .await;
    let home = tempfile::tempdir().unwrap();
    let cli = tenant_with_onboarding(&server, &sink, home.path());
    let input = home.path().join("signups.ndjson");
    let lines: String = (0..1_500)
        .map(|c| format!("{{\"customer\":\"r{c}\",\"name\":\"signed_up\"}}\n"))
        .collect();
    std::fs::write(&input, lines).unwrap();
    let out = cli.ok(&[
        "events",
        "import",
        input.to_str().unwrap(),
        "--batch-size",
        "500",
    ]);
    assert!(
        out.lines()
            .any(|l| l.starts_with("waiting ") && l.ends_with(": rate_limited")),
        "{out}"
    );
    assert!(
        out.trim_end()
            .ends_with("1500 accepted, 0 duplicates (1500 accepted and 0 duplicates in this run)"),
        "{out}"
    );
    let metrics = server.api().metrics().await;
    assert_eq!(counter(&metrics, "waymark_events_accepted_total"), 1_500);
}

#[tokio::test]
async fn the_handoff_queue_and_dead_letters_are_worked_from_the_command_line() {
    let sink = Sink::start();
    let server = Server::start(ServerOptions::default()).await;
    let home = tempfile::tempdir().unwrap();
    let mut cli = Cli::new(&server, home.path());
    cli.admin_token = Some(server.admin_token().to_string());
    let tenant: CreatedTenant = cli.json(&["tenant", "create", "ops"]);
    cli.key = Some(tenant.api_key.clone());
    let api = server.as_tenant(&tenant);
    let webhook = artifacts().path(WEBHOOK_CRATE);
    let push_channel = |name: &str| {
        let setting = format!("url={}/{name}", sink.url());
        cli.ok(&[
            "channel",
            "push",
            name,
            webhook.to_str().unwrap(),
            "--setting",
            &setting,
            "--allow-host",
            &sink.authority(),
        ])
    };
    // guided-onboarding sends through `email` (and its handoff through `slack` and `crm`);
    // onboarding through `webhook`, which is not registered yet: its welcome becomes a dead
    // letter.
    push_channel("email");
    push_channel("slack");
    push_channel("crm");
    let guided = artifacts().path(&example_crate("guided-onboarding"));
    cli.ok(&[
        "journey",
        "push",
        guided.to_str().unwrap(),
        "--name",
        "guided-onboarding",
    ]);
    let onboarding = artifacts().path(ONBOARDING_CRATE);
    cli.ok(&[
        "journey",
        "push",
        onboarding.to_str().unwrap(),
        "--name",
        ONBOARDING,
    ]);
    cli.ok(&["events", "send", "--customer", "bob", "--name", "signed_up"]);
    let dead: waymark_api::dead_letters::DeadLetters = wait_for_some("a dead letter", || async {
        let dead: waymark_api::dead_letters::DeadLetters = cli.json(&["dead-letters", "list"]);
        (!dead.dead_letters.is_empty()).then_some(dead)
    })
    .await;
    assert_eq!(dead.dead_letters[0].channel, WEBHOOK);
    let table = cli.ok(&["dead-letters", "list"]);
    assert!(table.contains(&dead.dead_letters[0].id), "{table}");

    // Two stall windows without a login: bob is handed to customer success.
    let admin = server.api();
    admin.advance_clock(2 * DAY_MS).await;
    api.wait_for_enrollment("bob", "guided-onboarding", "a first stall", |e| {
        e.stalls.len() == 1
    })
    .await;
    admin.advance_clock(2 * DAY_MS).await;
    let task = wait_for_some("bob's cs task", || async {
        let list: waymark_api::tasks::TaskList =
            cli.json(&["tasks", "list", "--status", "open", "--queue", "cs"]);
        list.tasks.into_iter().next()
    })
    .await;
    assert_eq!(task.customer, "bob");
    let claimed = cli.ok(&["tasks", "claim", &task.id, "--assignee", "grace@cs"]);
    assert!(
        claimed.starts_with(&format!("task {} claimed", task.id)),
        "{claimed}"
    );
    let resolved: Task = cli.json(&[
        "tasks",
        "resolve",
        &task.id,
        "--resolution",
        "call booked",
        "--property",
        "note=walked through login",
    ]);
    assert_eq!(resolved.status, TaskStatus::Resolved);
    assert_eq!(resolved.resolution.as_deref(), Some("call booked"));
    let follow_up = sink.wait_for_delivery("cs_follow_up", "bob").await;
    assert_eq!(follow_up.payload()["resolution"], "call booked");

    // Once the channel exists, its dead letters (the welcome, and by now onboarding's nudge)
    // are requeued and delivered.
    push_channel(WEBHOOK);
    let now_dead: waymark_api::dead_letters::DeadLetters = cli.json(&["dead-letters", "list"]);
    let requeued: waymark_api::dead_letters::Requeued =
        cli.json(&["dead-letters", "retry", "--channel", WEBHOOK]);
    let mut ids = requeued.ids.clone();
    ids.sort();
    let mut expected: Vec<_> = now_dead.dead_letters.iter().map(|m| m.id.clone()).collect();
    expected.sort();
    assert_eq!(ids, expected);
    assert!(ids.contains(&dead.dead_letters[0].id));
    sink.wait_for("bob's welcome through webhook", |r| {
        r.iter()
            .any(|r| r.channel() == WEBHOOK && r.is("welcome", "bob"))
    })
    .await;
}

#[tokio::test]
async fn a_journey_report_compares_an_experiments_arms() {
    let world = Example::start("ab-welcome", &["email"]).await;
    let customers = ["ana", "ben", "cyd", "dee", "eli", "fay"];
    let signups: Vec<Value> = customers
        .iter()
        .map(|c| event(&format!("{c}-signed-up"), c, "signed_up"))
        .collect();
    world.post(&signups).await;
    for customer in customers {
        world.wait_for(customer, "enrolled", |_| true).await;
    }
    let home = tempfile::tempdir().unwrap();
    let mut cli = Cli::new(&world.server, home.path());
    cli.key = Some(world.tenant.api_key.clone());
    let table = cli.ok(&["journey", "report", "ab-welcome"]);
    assert!(
        table.contains("experiment welcome_copy, compared on activated"),
        "{table}"
    );
    // A customers' journey says so (account journeys count accounts, below).
    assert!(table.contains("counts customers"), "{table}");
    assert!(table.contains("probability best"), "{table}");
    // Every customer is in one of the two arms' samples.
    let report: JourneyReport = cli.json(&["journey", "report", "ab-welcome"]);
    let arms = &report.report.experiments["welcome_copy"].arms;
    let sampled: u64 = arms.values().map(|a| a.sample_size).sum();
    assert_eq!(sampled, customers.len() as u64);
    for arm in arms.keys() {
        assert!(table.contains(arm.as_str()), "{arm} in {table}");
    }
}

/// Account journeys (issue 12): the report of a journey whose subject is the account says so
/// and counts accounts.
#[tokio::test]
async fn a_journey_report_of_an_account_journey_counts_accounts() {
    let world = Example::start("account-onboarding", &["email", "slack"]).await;
    world
        .post(&[
            event_with(
                "g-ada",
                "ada",
                "group",
                json!({ "group_id": "acme", "traits": { "csm": "zoe" } }),
            ),
            event_with("g-ben", "ben", "group", json!({ "group_id": "acme" })),
            event("s-ada", "ada", "signed_up"),
            event("s-ben", "ben", "signed_up"),
            event("p-ben", "ben", "project_created"),
        ])
        .await;
    let home = tempfile::tempdir().unwrap();
    let mut cli = Cli::new(&world.server, home.path());
    cli.key = Some(world.tenant.api_key.clone());
    let report: JourneyReport = wait_for_some("the account's first value", || async {
        let report: JourneyReport = cli.json(&["journey", "report", "account-onboarding"]);
        let first = report.report.overall.milestones.first()?;
        (first.reached == 1).then_some(report)
    })
    .await;
    assert_eq!(report.report.overall.entered, 1, "{report:?}");
    let table = cli.ok(&["journey", "report", "account-onboarding"]);
    assert!(
        table.contains("an account journey: counts accounts, one enrollment each"),
        "{table}"
    );
    let paths_header = table
        .lines()
        .find(|l| l.split('|').nth(1).is_some_and(|c| c.trim() == "path"))
        .unwrap_or_else(|| panic!("no paths table in\n{table}"));
    assert!(paths_header.contains("accounts"), "{paths_header}");
}

/// Issue 13, experiments slice: `waymark backtest --component FILE.wasm` tries a component that
/// is never uploaded, and `--migrate-from`/`--migrate-at` roll it out mid-window, moving the
/// replay's running enrollments to it.
#[tokio::test]
async fn a_backtest_of_an_unuploaded_component_with_its_migration_from_the_command_line() {
    let world = Onboarding::start().await;
    let admin = world.server.api();
    let start = admin.clock_now().await;
    world.sign_up("ada").await;
    for _ in 0..4 {
        admin.advance_clock(DAY_MS).await;
    }
    world.sink.wait_for_delivery("nudge", "ada").await;
    let home = tempfile::tempdir().unwrap();
    let mut cli = Cli::new(&world.server, home.path());
    cli.key = Some(world.tenant.api_key.clone());
    let v2 = artifacts().path(MIGRATING_CRATE);
    let (from, to) = (start.to_string(), (start + 4 * DAY_MS + 1).to_string());
    let at = (start + HOUR_MS).to_string();
    let args = [
        "backtest",
        ONBOARDING,
        "--component",
        v2.to_str().unwrap(),
        "--from",
        &from,
        "--to",
        &to,
        "--migrate-from",
        "1",
        "--migrate-at",
        &at,
    ];
    let done: waymark_api::backtests::Backtest = cli.json(&args);
    assert_eq!(
        done.status,
        waymark_api::backtests::BacktestStatus::Done,
        "{done:?}"
    );
    let result = done.result.expect("a result");
    assert!(result.candidate_digest.is_some(), "{result:?}");
    let migration = result.migration.expect("the migration's report");
    assert_eq!((migration.moved, migration.refused), (1, 0));
    let table = cli.ok(&args);
    assert!(table.contains("component "), "{table}");
    // Never stored: the journey still has its one version.
    let versions = world
        .api()
        .tenant_client()
        .journey(ONBOARDING)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(versions.versions.len(), 1);
    // --version and --component are one or the other.
    let both: Vec<&str> = args.iter().copied().chain(["--version", "1"]).collect();
    let out = cli.run(&both);
    assert!(!out.status.success(), "{out:?}");
}
