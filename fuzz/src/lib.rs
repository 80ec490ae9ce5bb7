//! Shared pieces of the fuzz targets (`fuzz_targets/`): arbitrary journey commands.

use arbitrary::Arbitrary;

/// A guest-chosen string: mostly short names from a small alphabet (so that they hit what a
/// spec declares), sometimes anything.
#[derive(Debug, Clone)]
pub struct Name(pub String);

impl<'a> Arbitrary<'a> for Name {
    fn arbitrary(u: &mut arbitrary::Unstructured<'a>) -> arbitrary::Result<Self> {
        const KNOWN: [&str; 8] = [
            "webhook",
            "email",
            "welcome",
            "nudge",
            "first_value",
            "subject",
            "a",
            "$stall:first_value",
        ];
        Ok(Name(if u.ratio(3, 4)? {
            u.choose(&KNOWN)?.to_string()
        } else {
            String::arbitrary(u)?
        }))
    }
}

/// One command a journey may return, as the WIT contract allows it.
#[derive(Debug, Clone, Arbitrary)]
pub enum ArbCommand {
    Send {
        channel: Name,
        template: Name,
        payload: String,
    },
    Schedule {
        name: Name,
        due: i64,
    },
    Cancel(Name),
    Milestone(Name),
    SetState(Vec<u8>),
    Assign {
        experiment: Name,
        arm: Name,
    },
    Handoff {
        queue: Name,
        reason: String,
        priority: u8,
    },
    Exit(String),
    Complete,
}
