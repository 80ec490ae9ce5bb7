//! Journeys: specs and stored versions go out; a dry run's decision context comes in and its
//! commands go out. The decision vocabulary mirrors the WIT contract on both sides, so most of
//! this is one-to-one, but spelt out so either side may move on its own.

use super::all;
use crate::model::rollout::{Candidate, Rollout};
use crate::model::{self, UnknownWord};
use crate::store::JourneyVersion;
use waymark_api::journeys as api;

/// A journey in `GET /v1/journeys`: its latest stored version and which ones take entrants.
pub(crate) fn summary(name: String, rollout: Rollout) -> api::JourneySummary {
    api::JourneySummary {
        name,
        latest_version: rollout.latest,
        live_version: rollout.live,
        candidate: rollout.candidate.map(candidate),
    }
}

/// A journey's version pointers.
pub(crate) fn rollout(name: String, rollout: Rollout) -> api::JourneyRollout {
    api::JourneyRollout {
        name,
        latest_version: rollout.latest,
        live_version: rollout.live,
        candidate: rollout.candidate.map(candidate),
        previous_live_versions: rollout.previous,
    }
}

fn candidate(c: Candidate) -> api::RolloutCandidate {
    api::RolloutCandidate {
        version: c.version,
        share_percent: c.percent,
    }
}

impl From<JourneyVersion> for api::JourneyVersion {
    fn from(version: JourneyVersion) -> Self {
        let JourneyVersion {
            name,
            version,
            digest,
            spec,
            uploaded_at,
        } = version;
        api::JourneyVersion {
            name,
            version,
            digest,
            spec: spec.into(),
            uploaded_at,
        }
    }
}

impl From<model::Spec> for api::Spec {
    fn from(spec: model::Spec) -> Self {
        let model::Spec {
            description,
            entry,
            exit_on,
            milestones,
            goal,
            reentry,
            channels,
            experiments,
            audience,
        } = spec;
        api::Spec {
            description,
            entry: all(entry),
            exit_on,
            milestones: all(milestones),
            goal,
            reentry: reentry.into(),
            channels,
            experiments: all(experiments),
            subject: match audience.subject {
                model::Subject::Customer => api::Subject::Customer,
                model::Subject::Account => api::Subject::Account,
            },
            audience: all(audience.triggers),
        }
    }
}

impl From<model::AudienceTrigger> for api::AudienceTrigger {
    fn from(trigger: model::AudienceTrigger) -> Self {
        match trigger {
            model::AudienceTrigger::Inactive {
                name,
                events,
                quiet_for,
            } => api::AudienceTrigger::Inactive {
                name,
                events,
                quiet_for,
            },
            model::AudienceTrigger::Matches {
                name,
                expression,
                exit_when_unmatched,
            } => api::AudienceTrigger::Matches {
                name,
                expression,
                exit_when_unmatched,
            },
            model::AudienceTrigger::Date {
                name,
                attribute,
                offset_days,
                at_minute,
            } => api::AudienceTrigger::Date {
                name,
                attribute,
                offset_days,
                at_minute,
            },
        }
    }
}

impl From<model::EntryTrigger> for api::EntryTrigger {
    fn from(entry: model::EntryTrigger) -> Self {
        let model::EntryTrigger { event, filter } = entry;
        api::EntryTrigger { event, filter }
    }
}

impl From<model::MilestoneSpec> for api::MilestoneSpec {
    fn from(milestone: model::MilestoneSpec) -> Self {
        let model::MilestoneSpec { name, stall_after } = milestone;
        api::MilestoneSpec { name, stall_after }
    }
}

impl From<model::Reentry> for api::Reentry {
    fn from(reentry: model::Reentry) -> Self {
        match reentry {
            model::Reentry::Never => api::Reentry::Never,
            model::Reentry::AfterExit => api::Reentry::AfterExit,
            model::Reentry::Always => api::Reentry::Always,
            model::Reentry::Keyed(property) => api::Reentry::Keyed(property),
        }
    }
}

impl From<model::ExperimentSpec> for api::ExperimentSpec {
    fn from(experiment: model::ExperimentSpec) -> Self {
        let model::ExperimentSpec {
            name,
            arms,
            allocation,
        } = experiment;
        let allocation = match allocation {
            model::Allocation::Fixed => None,
            model::Allocation::Thompson { goal } => Some(api::ExperimentAllocation {
                mode: "thompson".into(),
                goal,
            }),
        };
        api::ExperimentSpec {
            name,
            arms,
            allocation,
        }
    }
}

impl TryFrom<api::DecisionContext> for model::DecisionContext {
    type Error = UnknownWord;

    fn try_from(context: api::DecisionContext) -> Result<Self, UnknownWord> {
        let api::DecisionContext {
            trigger,
            customer,
            enrollment,
            now,
            seed,
        } = context;
        Ok(model::DecisionContext {
            trigger: trigger.into(),
            customer: customer.into(),
            enrollment: enrollment.try_into()?,
            now,
            seed,
        })
    }
}

impl From<api::Trigger> for model::Trigger {
    fn from(trigger: api::Trigger) -> Self {
        match trigger {
            api::Trigger::Entered { event } => model::Trigger::Entered {
                event: event.into(),
            },
            api::Trigger::Event { event } => model::Trigger::Event {
                event: event.into(),
            },
            api::Trigger::Timer { name } => model::Trigger::Timer { name },
            api::Trigger::Stalled { milestone } => model::Trigger::Stalled { milestone },
            api::Trigger::Delivery { report } => model::Trigger::Delivery {
                report: report.into(),
            },
        }
    }
}

impl From<api::DeliveryReport> for model::DeliveryReport {
    fn from(report: api::DeliveryReport) -> Self {
        let api::DeliveryReport {
            message_id,
            channel,
            template,
            outcome,
        } = report;
        model::DeliveryReport {
            message_id,
            channel,
            template,
            outcome: match outcome {
                api::DeliveryOutcome::Delivered { provider_id } => {
                    model::DeliveryOutcome::Delivered { provider_id }
                }
                api::DeliveryOutcome::Failed { reason } => {
                    model::DeliveryOutcome::Failed { reason }
                }
            },
        }
    }
}

impl From<api::ChannelStats> for model::ChannelStats {
    fn from(stats: api::ChannelStats) -> Self {
        let api::ChannelStats {
            channel,
            sent,
            delivered,
            failed,
        } = stats;
        model::ChannelStats {
            channel,
            sent,
            delivered,
            failed,
        }
    }
}

impl From<model::Command> for api::Command {
    fn from(command: model::Command) -> Self {
        match command {
            model::Command::Send(model::Send {
                channel,
                template,
                payload,
            }) => api::Command::Send(api::Send {
                channel,
                template,
                payload,
            }),
            model::Command::Schedule { name, due } => api::Command::Schedule { name, due },
            model::Command::Cancel { name } => api::Command::Cancel { name },
            model::Command::Milestone { name } => api::Command::Milestone { name },
            model::Command::SetState { state } => api::Command::SetState { state },
            model::Command::Assign(assignment) => api::Command::Assign(assignment.into()),
            model::Command::Handoff(model::Handoff {
                queue,
                reason,
                priority,
            }) => api::Command::Handoff(api::Handoff {
                queue,
                reason,
                priority,
            }),
            model::Command::Exit { reason } => api::Command::Exit { reason },
            model::Command::Complete => api::Command::Complete,
        }
    }
}

// Account journeys (issue 12): the report says what it counts.
impl From<model::Subject> for api::Subject {
    fn from(subject: model::Subject) -> Self {
        match subject {
            model::Subject::Customer => api::Subject::Customer,
            model::Subject::Account => api::Subject::Account,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_spec_shows_every_declaration_as_the_model_serializes_it() {
        let spec = model::Spec {
            description: "welcome".into(),
            entry: vec![model::EntryTrigger {
                event: "signed_up".into(),
                filter: serde_json::from_value(json!({"plan": "pro"})).ok(),
            }],
            exit_on: vec!["deleted".into()],
            milestones: vec![model::MilestoneSpec {
                name: "first_value".into(),
                stall_after: Some(60_000),
            }],
            goal: None,
            reentry: model::Reentry::Keyed("order".into()),
            channels: vec!["webhook".into()],
            experiments: vec![model::ExperimentSpec {
                name: "copy".into(),
                arms: vec!["a".into(), "b".into()],
                allocation: Default::default(),
            }],
            audience: Default::default(),
        };
        // The API shows the model's `audience` (contract 0.1.2) flat: `subject` beside the
        // triggers, both always present; everything else as the model serializes it.
        let shown = |spec: &model::Spec| {
            let mut json = serde_json::to_value(spec).expect("a spec serializes");
            let object = json.as_object_mut().expect("an object");
            let audience = object.remove("audience").unwrap_or(json!({}));
            object.insert(
                "subject".into(),
                audience
                    .get("subject")
                    .cloned()
                    .unwrap_or(json!("customer")),
            );
            object.insert(
                "audience".into(),
                audience.get("triggers").cloned().unwrap_or(json!([])),
            );
            json
        };
        assert_eq!(
            serde_json::to_value(api::Spec::from(spec.clone())).ok(),
            Some(shown(&spec))
        );
        let account = model::Spec {
            audience: model::Audience {
                subject: model::Subject::Account,
                triggers: vec![
                    model::AudienceTrigger::Inactive {
                        name: "quiet".into(),
                        events: vec!["logged_in".into()],
                        quiet_for: 86_400_000,
                    },
                    model::AudienceTrigger::Matches {
                        name: "trial".into(),
                        expression: "plan == \"trial\"".into(),
                        exit_when_unmatched: true,
                    },
                    model::AudienceTrigger::Date {
                        name: "renewal".into(),
                        attribute: "renews_on".into(),
                        offset_days: -7,
                        at_minute: 540,
                    },
                ],
            },
            ..spec
        };
        assert_eq!(
            serde_json::to_value(api::Spec::from(account.clone())).ok(),
            Some(shown(&account))
        );
    }

    #[test]
    fn every_command_shows_as_the_model_serializes_it() {
        let commands = vec![
            model::Command::Send(model::Send {
                channel: "webhook".into(),
                template: "hello".into(),
                payload: json!({"n": 1}),
            }),
            model::Command::Schedule {
                name: "nudge".into(),
                due: 5,
            },
            model::Command::Cancel {
                name: "nudge".into(),
            },
            model::Command::Milestone {
                name: "first_value".into(),
            },
            model::Command::SetState { state: vec![7] },
            model::Command::Assign(model::VariantAssignment {
                experiment: "copy".into(),
                arm: "a".into(),
            }),
            model::Command::Handoff(model::Handoff {
                queue: "cs".into(),
                reason: "stuck".into(),
                priority: 2,
            }),
            model::Command::Exit {
                reason: "done".into(),
            },
            model::Command::Complete,
        ];
        let shown: Vec<api::Command> = all(commands.clone());
        assert_eq!(
            serde_json::to_value(shown).ok(),
            serde_json::to_value(commands).ok()
        );
    }

    #[test]
    fn a_dry_run_context_reads_into_the_model_as_the_model_would_read_it() {
        let context = json!({
            "trigger": {"kind": "delivery", "report": {
                "message_id": "m1", "channel": "webhook", "template": "hello",
                "outcome": {"status": "failed", "reason": "bounced"}
            }},
            "customer": {"id": "ada", "attributes": {"plan": "pro"}},
            "enrollment": {
                "id": "onboarding/ada/1", "journey": "onboarding", "version": 1,
                "customer": "ada", "run": 1, "status": "active", "entered_at": 0,
                "failure": {"trigger": "timer", "reason": "trap", "message": "x", "at": 3}
            },
            "now": 10,
            "seed": 42
        });
        let dto: api::DecisionContext =
            serde_json::from_value(context.clone()).expect("the DTO reads the context");
        let direct = serde_json::from_value::<model::DecisionContext>(context).ok();
        assert_eq!(model::DecisionContext::try_from(dto).ok(), direct);
    }
}
