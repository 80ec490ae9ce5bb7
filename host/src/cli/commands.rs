//! One function per client subcommand: resolve the connection, make the call through
//! `waymark-client`, print the answer (a table, or `--json`).

use super::config::{Options, Role};
use super::output::{self, table};
use super::{
    component, import, ChannelCommand, CliError, Command, CustomerCommand, DeadLettersCommand,
    EventsCommand, JourneyCommand, TasksCommand, TenantCommand,
};
use serde_json::Value;
use waymark_client::api::channels::ChannelRegistration;
use waymark_client::api::dead_letters::RetryDeadLetters;
use waymark_client::api::events::EventInput;
use waymark_client::api::journeys::Subject;
use waymark_client::api::messages::Message;
use waymark_client::api::reports::{Funnel, JourneyReport};
use waymark_client::api::tasks::{ResolveTask, Task, TaskQuery, TaskStatus};
use waymark_client::api::Object;
use waymark_client::{component_base64, Client};

/// Runs `command`.
pub async fn dispatch(command: Command) -> Result<(), CliError> {
    match command {
        Command::Tenant(g) => tenant(&g.options, g.json, g.command).await,
        Command::Journey(g) => journey(&tenant_client(&g.options)?, g.json, g.command).await,
        Command::Channel(g) => channel(&tenant_client(&g.options)?, g.json, g.command).await,
        Command::Events(g) => {
            let client = tenant_client(&g.options)?;
            match g.command {
                EventsCommand::Send(args) => send(&client, g.json, args).await,
                EventsCommand::Import(args) => import::run(&client, g.json, args).await,
            }
        }
        Command::Customer(g) => customer(&tenant_client(&g.options)?, g.json, g.command).await,
        Command::Tasks(g) => tasks(&tenant_client(&g.options)?, g.json, g.command).await,
        Command::DeadLetters(g) => {
            dead_letters(&tenant_client(&g.options)?, g.json, g.command).await
        }
        Command::Backtest(args) => super::backtest::run(args).await, // Backtests (issue 13)
        Command::Simulate(args) => super::simulate::run(args).await, // Backtests (issue 13)
    }
}

fn tenant_client(options: &Options) -> Result<Client, CliError> {
    options.client(Role::Tenant)
}

async fn tenant(options: &Options, json: bool, command: TenantCommand) -> Result<(), CliError> {
    let TenantCommand::Create { name } = command;
    let created = options.client(Role::Admin)?.create_tenant(&name).await?;
    if json {
        return output::json(&created);
    }
    println!("tenant {} created (id {})", created.name, created.id);
    println!("api key (shown once): {}", created.api_key);
    Ok(())
}

async fn journey(client: &Client, json: bool, command: JourneyCommand) -> Result<(), CliError> {
    match command {
        JourneyCommand::Push { path, name, draft } => {
            let name = name
                .or_else(|| component::default_name(&path))
                .ok_or_else(|| CliError::Input(format!("{}: pass --name", path.display())))?;
            let component = component::load(&path)?;
            let uploaded = if draft {
                client.upload_journey_draft(&name, component).await?
            } else {
                client.upload_journey(&name, component).await?
            };
            if json {
                return output::json(&uploaded);
            }
            println!(
                "journey {} version {} ({}){}",
                uploaded.name,
                uploaded.version,
                uploaded.digest,
                if draft { ", a draft" } else { "" }
            );
        }
        JourneyCommand::Promote {
            name,
            version,
            share,
        } => {
            let promote = waymark_client::api::journeys::Promote {
                version,
                share_percent: share,
            };
            print_rollout(json, client.promote_journey(&name, &promote).await?)?;
        }
        JourneyCommand::Rollback { name } => {
            print_rollout(json, client.rollback_journey(&name).await?)?;
        }
        JourneyCommand::List => {
            let list = client.journeys().await?;
            if json {
                return output::json(&list);
            }
            let mut t = table(["journey", "latest version", "live", "rolling out"]);
            for j in &list.journeys {
                t.add_row([
                    j.name.clone(),
                    j.latest_version.to_string(),
                    j.live_version.map_or("-".into(), |v| v.to_string()),
                    j.candidate.map_or("-".into(), |c| {
                        format!("{} to {}%", c.version, c.share_percent)
                    }),
                ]);
            }
            println!("{t}");
        }
        JourneyCommand::Show { name } => {
            let versions = client.journey(&name).await?;
            if json {
                return output::json(&versions);
            }
            let mut t = table([
                "version",
                "uploaded",
                "entry on",
                "milestones",
                "goal",
                "channels",
                "digest",
            ]);
            for v in &versions.versions {
                let triggers: Vec<_> = v.spec.entry.iter().map(|t| t.event.clone()).collect();
                let milestones: Vec<_> = v.spec.milestones.iter().map(|m| m.name.clone()).collect();
                t.add_row([
                    v.version.to_string(),
                    output::time(v.uploaded_at),
                    triggers.join(", "),
                    milestones.join(" > "),
                    v.spec.goal.clone().unwrap_or_else(|| "-".into()),
                    v.spec.channels.join(", "),
                    v.digest.chars().take(16).collect(),
                ]);
            }
            println!("journey {}", versions.name);
            println!("{t}");
        }
        JourneyCommand::Report { name } => {
            let report = client.report(&name).await?;
            if json {
                return output::json(&report);
            }
            print_report(&report);
        }
    }
    Ok(())
}

/// A journey's version pointers after a promotion or rollback.
fn print_rollout(
    json: bool,
    rollout: waymark_client::api::journeys::JourneyRollout,
) -> Result<(), CliError> {
    if json {
        return output::json(&rollout);
    }
    let live = rollout
        .live_version
        .map_or("none".into(), |v| v.to_string());
    match rollout.candidate {
        Some(c) => println!(
            "journey {}: version {live} live, version {} rolling out to {}% of new entrants",
            rollout.name, c.version, c.share_percent
        ),
        None => println!("journey {}: version {live} live", rollout.name),
    }
    Ok(())
}

/// The report as a person reads it: the funnel's totals per group, then the milestones,
/// channels and paths of the whole journey.
fn print_report(report: &JourneyReport) {
    println!(
        "journey {} (latest version {})",
        report.name, report.latest_version
    );
    // Account journeys (issue 12): what the counts count.
    let noun = subject_noun(report.subject);
    match report.subject {
        Subject::Account => println!("an account journey: counts {noun}, one enrollment each"),
        Subject::Customer => println!("counts {noun}"),
    }
    let mut groups = vec![("overall".to_string(), &report.report.overall)];
    groups.extend(
        report
            .report
            .by_version
            .iter()
            .map(|(v, f)| (format!("version {v}"), f)),
    );
    for (experiment, arms) in &report.report.by_arm {
        groups.extend(
            arms.iter()
                .map(|(arm, f)| (format!("{experiment}: {arm}"), f)),
        );
    }
    let mut t = table([
        "group",
        "entered",
        "active",
        "completed",
        "exited",
        "stalled now",
        "stalled ever",
        "goal conversion",
    ]);
    for (group, f) in &groups {
        t.add_row([
            group.clone(),
            f.entered.to_string(),
            f.active.to_string(),
            f.completed.to_string(),
            f.exited.to_string(),
            f.stalled_now.to_string(),
            f.stalled_ever.to_string(),
            output::percent(ratio(f.completed, f.entered)),
        ]);
    }
    println!("{t}");
    print_milestones(&report.report.overall, noun);
    print_experiments(&report.report.experiments);
}

/// Each experiment's arms compared on its metric: sample, conversion with its 95% interval,
/// and the probability that the arm is best.
fn print_experiments(
    experiments: &std::collections::BTreeMap<String, waymark_client::api::reports::ExperimentStats>,
) {
    for (name, experiment) in experiments {
        let mut t = table([
            "arm",
            "sample",
            "converted",
            "conversion (95% interval)",
            "probability best",
        ]);
        for (arm, stats) in &experiment.arms {
            let conversion = stats.conversion.map_or("-".into(), |c| {
                format!(
                    "{} ({} to {})",
                    output::percent(Some(c.rate)),
                    output::percent(Some(c.low)),
                    output::percent(Some(c.high))
                )
            });
            t.add_row([
                arm.clone(),
                stats.sample_size.to_string(),
                stats.converted.to_string(),
                conversion,
                output::percent(stats.probability_best),
            ]);
        }
        println!(
            "experiment {name}, compared on {}, allocation {}",
            experiment.metric, experiment.allocation
        );
        println!("{t}");
    }
}

fn ratio(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

/// What a journey's report counts, as a column header says it.
fn subject_noun(subject: Subject) -> &'static str {
    match subject {
        Subject::Account => "accounts",
        Subject::Customer => "customers",
    }
}

fn print_milestones(f: &Funnel, noun: &str) {
    if !f.milestones.is_empty() {
        let mut t = table(["milestone", "reached", "conversion", "median time to reach"]);
        for m in &f.milestones {
            t.add_row([
                m.name.clone(),
                m.reached.to_string(),
                output::percent(m.conversion),
                m.median_time_to_reach_ms
                    .map(output::duration)
                    .unwrap_or_else(|| "-".into()),
            ]);
        }
        println!("{t}");
    }
    if !f.exited_by_reason.is_empty() {
        let mut t = table(["exit reason", "enrollments"]);
        for (reason, n) in &f.exited_by_reason {
            t.add_row([reason.clone(), n.to_string()]);
        }
        println!("{t}");
    }
    if !f.channels.is_empty() {
        let mut t = table([
            "channel",
            "sent",
            "delivered",
            "failed",
            "opened",
            "clicked",
        ]);
        for (name, c) in &f.channels {
            t.add_row([
                name.clone(),
                c.sent.to_string(),
                c.delivered.to_string(),
                c.failed.to_string(),
                c.opened.to_string(),
                c.clicked.to_string(),
            ]);
        }
        println!("{t}");
    }
    if !f.paths.is_empty() {
        let mut t = table(["path", noun]);
        for p in &f.paths {
            let path = if p.path.is_empty() {
                "(no milestone yet)".to_string()
            } else {
                p.path.join(" > ")
            };
            t.add_row([path, p.customers.to_string()]);
        }
        println!("{t}");
    }
}

async fn channel(client: &Client, json: bool, command: ChannelCommand) -> Result<(), CliError> {
    match command {
        ChannelCommand::Push {
            name,
            path,
            settings,
            secrets,
            allowed_hosts,
        } => {
            let registration = ChannelRegistration {
                component: component_base64(&component::load(&path)?),
                settings: key_values(&settings)?,
                secrets: key_values(&secrets)?,
                allowed_hosts,
                rate: None,
            };
            let channel = client.register_channel(&name, &registration).await?;
            if json {
                return output::json(&channel);
            }
            println!(
                "channel {} version {} ({})",
                channel.name, channel.version, channel.digest
            );
        }
        ChannelCommand::List => {
            let list = client.channels().await?;
            if json {
                return output::json(&list);
            }
            let mut t = table(["channel", "version", "allowed hosts", "secrets"]);
            for c in &list.channels {
                t.add_row([
                    c.name.clone(),
                    c.version.to_string(),
                    c.allowed_hosts.join(", "),
                    c.secrets.join(", "),
                ]);
            }
            println!("{t}");
        }
    }
    Ok(())
}

/// `KEY=VALUE` pairs as a JSON object; a VALUE that parses as JSON is taken as that (`3`,
/// `true`, `{"a":1}`), anything else as a string.
fn key_values(pairs: &[String]) -> Result<Object, CliError> {
    let mut object = Object::new();
    for pair in pairs {
        let (key, value) = pair
            .split_once('=')
            .filter(|(k, _)| !k.is_empty())
            .ok_or_else(|| CliError::Input(format!("{pair:?} is not KEY=VALUE")))?;
        let value =
            serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_string()));
        object.insert(key.to_string(), value);
    }
    Ok(object)
}

/// `waymark events send`.
#[derive(clap::Args)]
pub struct SendArgs {
    /// The whole event as JSON (`{"id","customer","name","properties","timestamp"}`; `-` reads
    /// stdin); a missing `id` is generated. Instead of the flags below.
    #[arg(long, conflicts_with_all = ["customer", "name", "id", "properties", "timestamp"])]
    event: Option<String>,
    /// The customer's id.
    #[arg(long, required_unless_present = "event")]
    customer: Option<String>,
    /// What happened.
    #[arg(long, required_unless_present = "event")]
    name: Option<String>,
    /// The event's id (for a safe retry: the server answers `duplicate` to a repeat);
    /// generated when left out and printed.
    #[arg(long)]
    id: Option<String>,
    /// A property, `KEY=VALUE` (JSON when it parses).
    #[arg(long = "property", value_name = "KEY=VALUE")]
    properties: Vec<String>,
    /// When it happened, ms since the epoch (default: the server's now).
    #[arg(long)]
    timestamp: Option<i64>,
}

async fn send(client: &Client, json: bool, args: SendArgs) -> Result<(), CliError> {
    let event = match args.event {
        Some(text) => {
            let text = if text == "-" {
                std::io::read_to_string(std::io::stdin())
                    .map_err(|e| CliError::Io(format!("cannot read stdin: {e}")))?
            } else {
                text
            };
            let mut value: Value = serde_json::from_str(&text)
                .map_err(|e| CliError::Input(format!("--event is not JSON: {e}")))?;
            let object = value
                .as_object_mut()
                .ok_or_else(|| CliError::Input("--event must be a JSON object".into()))?;
            if !object.contains_key("id") {
                object.insert("id".into(), Value::String(random_id()?));
            }
            serde_json::from_value::<EventInput>(value)
                .map_err(|e| CliError::Input(format!("--event: {e}")))?
        }
        None => EventInput {
            id: args.id.map_or_else(random_id, Ok)?,
            // clap requires both without --event.
            customer: args.customer.unwrap_or_default(),
            name: args.name.unwrap_or_default(),
            properties: Some(key_values(&args.properties)?),
            timestamp: args.timestamp,
        },
    };
    let answer = client.post_events(std::slice::from_ref(&event)).await?;
    if json {
        return output::json(&answer);
    }
    let status = answer
        .results
        .first()
        .map(|r| r.status.as_str())
        .unwrap_or("accepted");
    println!("event {} {status}", event.id);
    Ok(())
}

/// A fresh event id: `cli-` and 128 random bits in hex.
fn random_id() -> Result<String, CliError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)
        .map_err(|e| CliError::Io(format!("no randomness for an event id: {e}")))?;
    Ok(format!("cli-{}", hex::encode(bytes)))
}

async fn customer(client: &Client, json: bool, command: CustomerCommand) -> Result<(), CliError> {
    let CustomerCommand::Show { id } = command;
    let customer = client.customer(&id).await?;
    if json {
        return output::json(&customer);
    }
    println!("customer {}", customer.id);
    if !customer.attributes.is_empty() {
        let mut t = table(["attribute", "value"]);
        for (k, v) in &customer.attributes {
            t.add_row([k.clone(), v.to_string()]);
        }
        println!("{t}");
    }
    let mut t = table([
        "journey",
        "version",
        "run",
        "status",
        "entered",
        "milestones",
        "stalled on",
        "failure",
    ]);
    for e in &customer.enrollments {
        let milestones: Vec<_> = e.milestones.iter().map(|m| m.name.clone()).collect();
        let status = match (&e.exit_reason, e.paused.is_some()) {
            (Some(reason), _) => format!("{:?} ({reason})", e.status).to_lowercase(),
            (None, true) => format!("{:?}, paused", e.status).to_lowercase(),
            (None, false) => format!("{:?}", e.status).to_lowercase(),
        };
        t.add_row([
            e.journey.clone(),
            e.version.to_string(),
            e.run.to_string(),
            status,
            output::time(e.entered_at),
            milestones.join(" > "),
            e.stalled_on.clone().unwrap_or_else(|| "-".into()),
            e.failure
                .as_ref()
                .map(|f| format!("{}: {}", f.reason, f.message))
                .unwrap_or_else(|| "-".into()),
        ]);
    }
    println!("{t}");
    print_messages(&customer.messages);
    Ok(())
}

fn print_messages(messages: &[Message]) {
    let mut t = table([
        "message", "journey", "channel", "template", "status", "attempts", "created", "error",
    ]);
    for m in messages {
        t.add_row([
            m.id.clone(),
            m.journey.clone(),
            m.channel.clone(),
            m.template.clone(),
            m.status.as_str().to_string(),
            m.attempts.to_string(),
            output::time(m.created_at),
            m.last_error.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    println!("{t}");
}

async fn tasks(client: &Client, json: bool, command: TasksCommand) -> Result<(), CliError> {
    let task = match command {
        TasksCommand::List {
            status,
            queue,
            limit,
        } => {
            let status = status.as_deref().map(|s| match s {
                "claimed" => TaskStatus::Claimed,
                "resolved" => TaskStatus::Resolved,
                _ => TaskStatus::Open,
            });
            let list = client
                .tasks(&TaskQuery {
                    status,
                    queue,
                    limit,
                })
                .await?;
            if json {
                return output::json(&list);
            }
            let mut t = table([
                "task", "queue", "priority", "status", "customer", "journey", "reason", "created",
                "assignee",
            ]);
            for task in &list.tasks {
                t.add_row([
                    task.id.clone(),
                    task.queue.clone(),
                    task.priority.to_string(),
                    task.status.as_str().to_string(),
                    task.customer.clone(),
                    task.journey.clone(),
                    task.reason.clone(),
                    output::time(task.created_at),
                    task.assignee.clone().unwrap_or_else(|| "-".into()),
                ]);
            }
            println!("{t}");
            return Ok(());
        }
        TasksCommand::Claim { id, assignee } => client.claim_task(&id, &assignee).await?,
        TasksCommand::Resolve {
            id,
            resolution,
            properties,
        } => {
            let resolve = ResolveTask {
                resolution,
                properties: key_values(&properties)?,
            };
            client.resolve_task(&id, &resolve).await?
        }
    };
    if json {
        return output::json(&task);
    }
    print_task(&task);
    Ok(())
}

fn print_task(task: &Task) {
    println!(
        "task {} {} (queue {}, customer {}, journey {}){}{}",
        task.id,
        task.status.as_str(),
        task.queue,
        task.customer,
        task.journey,
        task.assignee
            .as_ref()
            .map(|a| format!(", assignee {a}"))
            .unwrap_or_default(),
        task.resolution
            .as_ref()
            .map(|r| format!(", resolution {r}"))
            .unwrap_or_default(),
    );
}

async fn dead_letters(
    client: &Client,
    json: bool,
    command: DeadLettersCommand,
) -> Result<(), CliError> {
    match command {
        DeadLettersCommand::List { limit, after } => {
            let list = client.dead_letters(limit, after.as_deref()).await?;
            if json {
                return output::json(&list);
            }
            print_messages(&list.dead_letters);
            if let Some(next) = &list.next {
                println!("more: --after {next}");
            }
        }
        DeadLettersCommand::Retry { ids, channel, all } => {
            if ids.is_empty() && channel.is_none() && !all {
                return Err(CliError::Input(
                    "name the dead letters to retry: ids, --channel NAME, or --all".into(),
                ));
            }
            let requeued = client
                .retry_dead_letters(&RetryDeadLetters { ids, channel })
                .await?;
            if json {
                return output::json(&requeued);
            }
            println!("requeued {} dead letters", requeued.requeued);
            for id in &requeued.ids {
                println!("  {id}");
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_values_take_json_where_it_parses_and_strings_elsewhere() {
        let got = key_values(&["n=3".into(), "url=http://x".into(), "on=true".into()]).unwrap();
        assert_eq!(
            Value::Object(got),
            serde_json::json!({"n": 3, "url": "http://x", "on": true})
        );
        assert_eq!(
            key_values(&["novalue".into()]).unwrap_err().code(),
            "invalid_input"
        );
        assert!(key_values(&["=x".into()]).is_err());
    }
}
