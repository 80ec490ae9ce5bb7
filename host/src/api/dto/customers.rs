//! Customers and enrollments: `GET /v1/customers/{id}` shows them, and a dry run's context
//! carries one of each back in, so enrollments convert both ways. A failure's reason is a word
//! on the wire and a [`model::FailureReason`] inside; an unknown word is refused.

use super::all;
use crate::model::{self, UnknownWord};
use crate::store;
use waymark_api::customers as api;
use waymark_api::messages::Message;

/// The answer to `GET /v1/customers/{id}`.
pub(crate) fn customer(
    customer: model::Customer,
    enrollments: Vec<model::Enrollment>,
    messages: Vec<store::Message>,
    account: Option<String>,
) -> api::Customer {
    let model::Customer { id, attributes } = customer;
    api::Customer {
        id,
        attributes,
        enrollments: all(enrollments),
        messages: all::<_, Message>(messages),
        account,
    }
}

impl From<api::Profile> for model::Customer {
    fn from(profile: api::Profile) -> Self {
        let api::Profile { id, attributes } = profile;
        model::Customer { id, attributes }
    }
}

impl From<model::Enrollment> for api::Enrollment {
    fn from(enrollment: model::Enrollment) -> Self {
        let model::Enrollment {
            id,
            journey,
            version,
            customer,
            run,
            key,
            status,
            entered_at,
            ended_at,
            exit_reason,
            milestones,
            stalls,
            stalled_on,
            state,
            timers,
            variants,
            channels,
            failure,
            failures,
            loop_window,
            paused,
        } = enrollment;
        api::Enrollment {
            id,
            journey,
            version,
            customer,
            run,
            key,
            status: status.into(),
            entered_at,
            ended_at,
            exit_reason,
            milestones: all(milestones),
            stalls: all(stalls),
            stalled_on,
            state,
            timers: all(timers),
            variants: all(variants),
            channels: channels.into_iter().map(|(c, s)| (c, s.into())).collect(),
            failure: failure.map(Into::into),
            failures: all(failures),
            loop_window: loop_window.map(Into::into),
            paused: paused.map(Into::into),
        }
    }
}

impl TryFrom<api::Enrollment> for model::Enrollment {
    type Error = UnknownWord;

    fn try_from(enrollment: api::Enrollment) -> Result<Self, UnknownWord> {
        let api::Enrollment {
            id,
            journey,
            version,
            customer,
            run,
            key,
            status,
            entered_at,
            ended_at,
            exit_reason,
            milestones,
            stalls,
            stalled_on,
            state,
            timers,
            variants,
            channels,
            failure,
            failures,
            loop_window,
            paused,
        } = enrollment;
        Ok(model::Enrollment {
            id,
            journey,
            version,
            customer,
            run,
            key,
            status: status.into(),
            entered_at,
            ended_at,
            exit_reason,
            milestones: all(milestones),
            stalls: all(stalls),
            stalled_on,
            state,
            timers: all(timers),
            variants: all(variants),
            channels: channels.into_iter().map(|(c, s)| (c, s.into())).collect(),
            failure: failure.map(TryInto::try_into).transpose()?,
            failures: failures
                .into_iter()
                .map(TryInto::try_into)
                .collect::<Result<_, _>>()?,
            loop_window: loop_window.map(Into::into),
            paused: paused.map(Into::into),
        })
    }
}

impl From<model::EnrollmentStatus> for api::EnrollmentStatus {
    fn from(status: model::EnrollmentStatus) -> Self {
        match status {
            model::EnrollmentStatus::Active => api::EnrollmentStatus::Active,
            model::EnrollmentStatus::Completed => api::EnrollmentStatus::Completed,
            model::EnrollmentStatus::Exited => api::EnrollmentStatus::Exited,
        }
    }
}

impl From<api::EnrollmentStatus> for model::EnrollmentStatus {
    fn from(status: api::EnrollmentStatus) -> Self {
        match status {
            api::EnrollmentStatus::Active => model::EnrollmentStatus::Active,
            api::EnrollmentStatus::Completed => model::EnrollmentStatus::Completed,
            api::EnrollmentStatus::Exited => model::EnrollmentStatus::Exited,
        }
    }
}

same_shape!(model::MilestoneHit, api::MilestoneHit { name, at });

same_shape!(
    model::LoopWindow,
    api::LoopWindow {
        since,
        triggers,
        sends
    }
);

same_shape!(model::Pause, api::Pause { reason, at });

same_shape!(model::PendingTimer, api::PendingTimer { name, due });

same_shape!(
    model::VariantAssignment,
    api::VariantAssignment { experiment, arm }
);

same_shape!(
    model::ChannelSummary,
    api::ChannelSummary {
        sent,
        delivered,
        failed,
        suppressed,
        opened,
        clicked,
        replied,
        bounced,
        unsubscribed
    }
);

impl From<model::Failure> for api::Failure {
    fn from(failure: model::Failure) -> Self {
        let model::Failure {
            trigger,
            reason,
            message,
            at,
        } = failure;
        api::Failure {
            trigger,
            reason: failure_reason_word(reason).to_owned(),
            message,
            at,
        }
    }
}

impl TryFrom<api::Failure> for model::Failure {
    type Error = UnknownWord;

    fn try_from(failure: api::Failure) -> Result<Self, UnknownWord> {
        let api::Failure {
            trigger,
            reason,
            message,
            at,
        } = failure;
        Ok(model::Failure {
            trigger,
            reason: failure_reason(&reason)?,
            message,
            at,
        })
    }
}

/// A failure reason's word on the wire: in an enrollment's `failure` and in the `reason` of a
/// `decide_failed` error.
pub(crate) fn failure_reason_word(reason: model::FailureReason) -> &'static str {
    use model::FailureReason as R;
    match reason {
        R::Trap => "trap",
        R::Deadline => "deadline",
        R::Memory => "memory",
        R::GuestError => "guest_error",
        R::InvalidCommands => "invalid_commands",
        R::InvalidSpec => "invalid_spec",
        R::Instantiate => "instantiate",
        R::Unavailable => "unavailable",
        R::Internal => "internal",
    }
}

/// The failure reason a word names; the inverse of [`failure_reason_word`].
fn failure_reason(word: &str) -> Result<model::FailureReason, UnknownWord> {
    use model::FailureReason as R;
    Ok(match word {
        "trap" => R::Trap,
        "deadline" => R::Deadline,
        "memory" => R::Memory,
        "guest_error" => R::GuestError,
        "invalid_commands" => R::InvalidCommands,
        "invalid_spec" => R::InvalidSpec,
        "instantiate" => R::Instantiate,
        "unavailable" => R::Unavailable,
        "internal" => R::Internal,
        _ => {
            return Err(UnknownWord {
                kind: "failure reason",
                word: word.to_owned(),
            })
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::enroll;
    use model::FailureReason as R;

    const REASONS: [R; 9] = [
        R::Trap,
        R::Deadline,
        R::Memory,
        R::GuestError,
        R::InvalidCommands,
        R::InvalidSpec,
        R::Instantiate,
        R::Unavailable,
        R::Internal,
    ];

    fn enrollment_with_everything() -> model::Enrollment {
        let mut e = enroll("onboarding", 2, "ada", 3, Some("k".into()), 1_000);
        e.status = model::EnrollmentStatus::Exited;
        e.ended_at = Some(2_000);
        e.exit_reason = Some("unsubscribed".into());
        e.milestones.push(model::MilestoneHit {
            name: "first_login".into(),
            at: 1_100,
        });
        e.stalls.push(model::MilestoneHit {
            name: "first_value".into(),
            at: 1_500,
        });
        e.stalled_on = Some("first_value".into());
        e.state = vec![1, 2, 3];
        e.timers.push(model::PendingTimer {
            name: "nudge".into(),
            due: 9_000,
        });
        e.variants.push(model::VariantAssignment {
            experiment: "copy".into(),
            arm: "b".into(),
        });
        e.channels.entry("webhook".into()).or_default().opened = 4;
        e.loop_window = Some(model::LoopWindow {
            since: 1_000,
            triggers: 3,
            sends: 2,
        });
        e.paused = Some(model::Pause {
            reason: "too many sends".into(),
            at: 1_800,
        });
        e.record_failure(model::Failure {
            trigger: "timer".into(),
            reason: R::GuestError,
            message: "no".into(),
            at: 1_700,
        });
        e
    }

    #[test]
    fn failure_reasons_are_spelt_on_the_wire_as_the_model_spells_them() {
        for reason in REASONS {
            let word = failure_reason_word(reason);
            assert_eq!(word, reason.as_str());
            assert_eq!(failure_reason(word), Ok(reason));
        }
        assert!(failure_reason("gremlins").is_err());
    }

    #[test]
    fn an_enrollment_shows_every_field_as_the_model_serializes_it() {
        let e = enrollment_with_everything();
        let shown = api::Enrollment::from(e.clone());
        assert_eq!(
            serde_json::to_value(&shown).ok(),
            serde_json::to_value(&e).ok()
        );
    }

    #[test]
    fn an_enrollment_survives_the_trip_to_the_wire_and_back() {
        let e = enrollment_with_everything();
        assert_eq!(
            model::Enrollment::try_from(api::Enrollment::from(e.clone())),
            Ok(e)
        );
    }

    #[test]
    fn an_enrollment_failing_for_an_unknown_reason_is_refused() {
        let mut shown = api::Enrollment::from(enrollment_with_everything());
        if let Some(failure) = &mut shown.failure {
            failure.reason = "gremlins".into();
        }
        let refused = model::Enrollment::try_from(shown).map_err(|e| e.to_string());
        assert_eq!(
            refused,
            Err("unknown failure reason \"gremlins\"".to_string())
        );
    }
}
