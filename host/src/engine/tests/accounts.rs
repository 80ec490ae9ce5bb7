//! Account journeys (issue 12): members' events, made the account's by `engine::accounts`,
//! route to one enrollment per account.

use super::*;
use crate::engine::accounts::{account_customer, member_event, subject};

fn account_spec() -> Spec {
    let mut spec = spec();
    spec.audience.subject = Subject::Account;
    spec
}

fn member(id: &str) -> Customer {
    Customer {
        id: id.into(),
        attributes: serde_json::from_value(json!({ "role": id })).unwrap(),
    }
}

fn signed_up_by(id: &str) -> Event {
    let mut event = event("signed_up", json!({}));
    event.id = format!("s-{id}");
    event.customer = id.into();
    member_event(&event, &member(id))
}

#[test]
fn members_entry_events_enter_their_account_once_then_reach_its_enrollment() {
    let spec = account_spec();
    let journeys = [JourneyRef {
        name: "onboarding",
        version: 1,
        spec: &spec,
    }];
    let account = account_customer(&subject("acme"), None);
    let spec_of = |_: &str, _: u32| Some(&spec);

    let first = plan_event(
        &account,
        &signed_up_by("ada"),
        None,
        &[],
        &journeys,
        spec_of,
        5,
    );
    let entered = match &first[..] {
        [Step::Decide {
            enrollment,
            trigger: Trigger::Entered { event },
            ..
        }] => {
            assert_eq!(event.properties["member"]["id"], "ada");
            enrollment.clone()
        }
        other => panic!("{other:?}"),
    };
    assert_eq!(entered.customer, "account:acme");
    assert_eq!(entered.id, "onboarding/account:acme/1");

    // Another member's entry event, once the account is enrolled: an event of that enrollment.
    let existing = [entered.clone()];
    for by in ["ben", "eve"] {
        let steps = plan_event(
            &account,
            &signed_up_by(by),
            None,
            &existing,
            &journeys,
            spec_of,
            6,
        );
        match &steps[..] {
            [Step::Decide {
                enrollment,
                trigger: Trigger::Event { event },
                ..
            }] => {
                assert_eq!(enrollment.id, entered.id);
                assert_eq!(event.properties["member"]["attributes"]["role"], by);
            }
            other => panic!("{by}: {other:?}"),
        }
    }
}
