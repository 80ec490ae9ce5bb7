//! Account onboarding: a B2B account, not a single user, walks toward value. The journey's
//! subject is the account (`Spec::for_accounts`), so it has one enrollment per account, and
//! the events of every member of the account (customers a `group` call put in it) move that
//! one enrollment on. `decide` sees the account as its customer (its id and traits) and the
//! member whose event it is in the event (`ctx.member()`).
//!
//! - Entry: `signed_up` from any member, once per account ever (the account's first
//!   signup starts its onboarding; its other members' signups are events of the same
//!   enrollment). Entered: the member who signed up is welcomed (`account_welcome` through
//!   `email`, the payload naming the member as `to`: an account has no address of its own).
//!   A customer who belongs to no account (no `group` call yet) enters nothing.
//! - Milestones, each with a stall window: `first_value` (7 days): any member creates a first
//!   project (`project_created`); `sponsor_engaged` (14 more days, the goal): a member whose
//!   `role` trait is `executive` logs in (`logged_in`). An executive who logs in before the
//!   account's first project is remembered, and the sponsor counts as engaged as soon as the
//!   first value comes, so the funnel never counts more accounts at the goal than at first
//!   value.
//! - Stalled on a milestone: the account is handed to its customer success manager, named by
//!   the account's `csm` trait, once: a handoff task in queue `csm` (priority 1) and a post to
//!   CS's Slack (`csm_handoff` through `slack`) naming the CSM, the account and the milestone.
//!   Later stalls send nothing (a person owns the account now).
//!
//! What the journey remembers lives in the enrollment's state as JSON ([`Progress`]).

use serde::{Deserialize, Serialize};
use waymark_guest::prelude::*;

/// The channel members are written to.
pub const EMAIL: &str = "email";
/// The channel CS's notifications go through (registered as `plugins/slack`).
pub const SLACK: &str = "slack";
/// The human queue stalled accounts are handed to.
pub const CSM_QUEUE: &str = "csm";
/// The account trait naming its customer success manager.
pub const CSM_TRAIT: &str = "csm";
/// The member trait, and its value, that make a member the executive sponsor.
pub const ROLE_TRAIT: &str = "role";
pub const EXECUTIVE: &str = "executive";
/// The milestones, in order, with how long an account may take to reach each.
pub const FIRST_VALUE: &str = "first_value";
pub const SPONSOR_ENGAGED: &str = "sponsor_engaged";
pub const MILESTONES: [(&str, waymark_guest::Duration); 2] =
    [(FIRST_VALUE, days(7)), (SPONSOR_ENGAGED, days(14))];

/// What the journey remembers between triggers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// The member whose project was the account's first value.
    pub first_value_by: Option<String>,
    /// The executive whose login engaged the sponsor (or, before first value, will).
    pub sponsor: Option<String>,
    /// The account was handed to its CSM.
    pub handed_off: bool,
}

/// The account onboarding journey.
pub struct AccountOnboarding;

impl Journey for AccountOnboarding {
    fn describe() -> Spec {
        let spec = Spec::new(
            "Account onboarding: first value from any member, an executive sponsor engaged, stalls handed to the account's CSM",
        )
        .for_accounts()
        .enter_on("signed_up")
        .goal(SPONSOR_ENGAGED)
        .reentry(Reentry::Never)
        .channel(EMAIL)
        .channel(SLACK);
        MILESTONES.iter().fold(spec, |spec, (name, window)| {
            spec.milestone(*name, Some(*window))
        })
    }

    fn decide(ctx: &Context) -> Result<Decision, String> {
        let progress: Progress = ctx.enrollment.state_json()?.unwrap_or_default();
        Ok(match &ctx.trigger {
            Trigger::Entered(_) => welcome(ctx),
            Trigger::Event(event) if event.is("project_created") => project_created(ctx, progress),
            Trigger::Event(event) if event.is("logged_in") => logged_in(ctx, progress),
            Trigger::Stalled(milestone) => stalled(ctx, progress, milestone),
            _ => Decision::new(),
        })
    }
}

/// The member who signed up first is welcomed, by address: sends of an account's journey go to
/// whomever their payload names.
fn welcome(ctx: &Context) -> Decision {
    let Some(member) = ctx.member() else {
        return Decision::new();
    };
    Decision::new().send(
        EMAIL,
        "account_welcome",
        json!({
            "account_id": ctx.customer.id,
            "to": member.id,
            "email": member.attribute("email"),
        }),
    )
}

fn project_created(ctx: &Context, mut progress: Progress) -> Decision {
    if ctx.enrollment.has_milestone(FIRST_VALUE) {
        return Decision::new();
    }
    progress.first_value_by = ctx.member().map(|m| m.id);
    let mut decision = Decision::new().milestone(FIRST_VALUE);
    // An executive seen before the first value: engaged now.
    if progress.sponsor.is_some() {
        decision = decision.milestone(SPONSOR_ENGAGED);
    }
    decision.set_state_json(&progress)
}

fn logged_in(ctx: &Context, mut progress: Progress) -> Decision {
    let Some(member) = ctx.member() else {
        return Decision::new();
    };
    if member.attribute_str(ROLE_TRAIT) != Some(EXECUTIVE) || progress.sponsor.is_some() {
        return Decision::new();
    }
    progress.sponsor = Some(member.id);
    let decision = if ctx.enrollment.has_milestone(FIRST_VALUE) {
        Decision::new().milestone(SPONSOR_ENGAGED)
    } else {
        Decision::new()
    };
    decision.set_state_json(&progress)
}

fn stalled(ctx: &Context, mut progress: Progress, milestone: &str) -> Decision {
    if progress.handed_off {
        return Decision::new();
    }
    progress.handed_off = true;
    let account = &ctx.customer.id;
    let csm = ctx.customer.attribute_str(CSM_TRAIT);
    let reason = format!("account {account} stuck before {milestone}");
    let text = match csm {
        Some(csm) => format!("Account onboarding: {reason}; over to {csm}"),
        None => format!("Account onboarding: {reason}; no CSM assigned"),
    };
    // Without a stored template the payload is the message: Slack's `text`.
    Decision::new()
        .handoff(CSM_QUEUE, reason, 1)
        .send(
            SLACK,
            "csm_handoff",
            json!({
                "account_id": account,
                "csm": csm,
                "milestone": milestone,
                "text": text,
            }),
        )
        .set_state_json(&progress)
}

waymark_guest::export_journey!(AccountOnboarding);

#[cfg(test)]
mod tests {
    use super::*;
    use waymark_guest::Command;

    fn account() -> Customer {
        Customer::new("acme").with_attribute(CSM_TRAIT, json!("zoe"))
    }

    fn member(id: &str, role: &str) -> Customer {
        Customer::new(id)
            .with_attribute(ROLE_TRAIT, json!(role))
            .with_attribute("email", json!(format!("{id}@acme.test")))
    }

    fn on(name: &str, by: &Customer) -> Context {
        Context::on_event(Event::new(name).with_member(by)).for_customer(account())
    }

    fn with_progress(ctx: Context, progress: &Progress) -> Context {
        ctx.with_state(serde_json::to_vec(progress).unwrap())
    }

    fn milestones(decision: &Decision) -> Vec<&str> {
        decision
            .commands()
            .iter()
            .filter_map(|c| match c {
                Command::Milestone(name) => Some(name.as_str()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn spec_is_an_accounts_journey_entered_on_signup_with_two_milestones() {
        let spec = AccountOnboarding::describe();
        assert_eq!(spec.subject, waymark_guest::Subject::Account);
        assert_eq!(spec.goal.as_deref(), Some(SPONSOR_ENGAGED));
        let names: Vec<_> = spec.milestones.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, [FIRST_VALUE, SPONSOR_ENGAGED]);
    }

    #[test]
    fn the_member_who_signed_up_first_is_welcomed_by_address() {
        let ada = member("ada", "admin");
        let ctx =
            Context::entered(Event::new("signed_up").with_member(&ada)).for_customer(account());
        let decision = AccountOnboarding::decide(&ctx).unwrap();
        match decision.commands() {
            [Command::Send {
                channel, payload, ..
            }] => {
                assert_eq!(channel, EMAIL);
                assert_eq!(payload["to"], "ada");
                assert_eq!(payload["account_id"], "acme");
                assert_eq!(payload["email"], "ada@acme.test");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn any_members_first_project_is_first_value_once() {
        let ben = member("ben", "engineer");
        let decision = AccountOnboarding::decide(&on("project_created", &ben)).unwrap();
        assert_eq!(milestones(&decision), [FIRST_VALUE]);
        let again = on("project_created", &member("cy", "engineer")).with_milestone(FIRST_VALUE, 5);
        assert!(AccountOnboarding::decide(&again)
            .unwrap()
            .commands()
            .is_empty());
    }

    #[test]
    fn only_an_executives_login_engages_the_sponsor() {
        let reached = Context::on_event(Event::new("x")).with_milestone(FIRST_VALUE, 5);
        let login = |by: &Customer| {
            let mut ctx = on("logged_in", by);
            ctx.enrollment = reached.enrollment.clone();
            AccountOnboarding::decide(&ctx).unwrap()
        };
        assert!(milestones(&login(&member("ben", "engineer"))).is_empty());
        assert_eq!(
            milestones(&login(&member("eve", EXECUTIVE))),
            [SPONSOR_ENGAGED]
        );
    }

    #[test]
    fn an_executive_before_first_value_engages_the_sponsor_with_it() {
        let eve = member("eve", EXECUTIVE);
        let early = AccountOnboarding::decide(&on("logged_in", &eve)).unwrap();
        assert!(milestones(&early).is_empty(), "first value comes first");
        let remembered = Progress {
            sponsor: Some("eve".into()),
            ..Progress::default()
        };
        let ctx = with_progress(
            on("project_created", &member("ben", "engineer")),
            &remembered,
        );
        let decision = AccountOnboarding::decide(&ctx).unwrap();
        assert_eq!(milestones(&decision), [FIRST_VALUE, SPONSOR_ENGAGED]);
    }

    #[test]
    fn a_stall_hands_the_account_to_its_csm_once() {
        let ctx = Context::stalled(FIRST_VALUE).for_customer(account());
        let decision = AccountOnboarding::decide(&ctx).unwrap();
        let commands = decision.commands();
        assert!(commands.iter().any(|c| matches!(
            c,
            Command::Handoff { queue, priority: 1, .. } if queue == CSM_QUEUE
        )));
        let post = commands
            .iter()
            .find_map(|c| match c {
                Command::Send {
                    channel, payload, ..
                } if channel == SLACK => Some(payload),
                _ => None,
            })
            .expect("a Slack post");
        assert_eq!(post["csm"], "zoe");
        assert_eq!(
            post["text"],
            "Account onboarding: account acme stuck before first_value; over to zoe"
        );
        let handed = Progress {
            handed_off: true,
            ..Progress::default()
        };
        let later = with_progress(
            Context::stalled(SPONSOR_ENGAGED).for_customer(account()),
            &handed,
        );
        assert!(AccountOnboarding::decide(&later)
            .unwrap()
            .commands()
            .is_empty());
    }
}
