//! The sending policy, both ways: it is the body of `PUT /v1/policy` and the answer of both
//! policy routes.

use super::all;
use crate::model::{FrequencyCap, QuietHours, SendingPolicy};
use waymark_api::policy as api;

impl From<SendingPolicy> for api::SendingPolicy {
    fn from(policy: SendingPolicy) -> Self {
        let SendingPolicy {
            frequency_caps,
            quiet_hours,
        } = policy;
        api::SendingPolicy {
            frequency_caps: all(frequency_caps),
            quiet_hours: quiet_hours.map(Into::into),
        }
    }
}

impl From<api::SendingPolicy> for SendingPolicy {
    fn from(policy: api::SendingPolicy) -> Self {
        let api::SendingPolicy {
            frequency_caps,
            quiet_hours,
        } = policy;
        SendingPolicy {
            frequency_caps: all(frequency_caps),
            quiet_hours: quiet_hours.map(Into::into),
        }
    }
}

same_shape!(
    FrequencyCap,
    api::FrequencyCap {
        channel,
        max,
        window_ms
    }
);

same_shape!(
    QuietHours,
    api::QuietHours {
        start,
        end,
        default_timezone,
        channels
    }
);
