//! A hostile journey for the sandbox's end-to-end tests: one component whose `decide`
//! misbehaves in a different way for each event name, so that one upload serves every attack.
//!
//! Customers enter on `signed_up` (nothing happens then); each later event selects a
//! [`Behaviour`]:
//!
//! | event | what `decide` does | what the host must make of it |
//! | --- | --- | --- |
//! | `ok` | sends `ok` through `webhook` | a delivery, as for any journey |
//! | `spin` | loops forever | failure `deadline` |
//! | `bomb` | allocates and writes memory until there is none left | failure `memory` |
//! | `recurse` | recurses without bound | failure `trap` (stack overflow) |
//! | `huge` | returns a send whose payload is ~50 MiB of JSON | failure `trap` (hostcall fuel) or `invalid_commands` |
//! | `many` | returns 50,000 commands | failure `invalid_commands`, or `trap` if copying them exhausts the hostcall fuel first |
//! | `too_many` | returns 1,000 commands: past any sane command limit, well within the hostcall fuel | failure `invalid_commands` |
//! | `panic` | panics | failure `trap`, with the panic message |
//! | `bad_json` | returns a send whose payload is not JSON | failure `invalid_commands` |
//! | `error` | returns `Err` | failure `guest_error` |
//! | `entropy` | sends what the wall clock, the monotonic clock, `getrandom` and `insecure-seed` say | the same answer for the same context: `now` and `seed` decide it |
//! | `remember` | sends the customers earlier calls of this instance saw (kept in a global), and adds this one | whatever the instance history, never another tenant's customers |
//! | `odd_timer` | sends `ok`, then schedules a timer whose name is 1 MiB with CR, LF and `0x1f` in it | failure `invalid_commands` (command 1), nothing sent |
//!
//! The SDK can only build payloads that are valid JSON, as an SDK should; a hostile tenant is
//! not bound to it. So the `huge` and `bad_json` payloads are forged below the SDK, in this
//! crate's own export of the journey world: [`Hostile::decide`] returns a placeholder send and
//! [`forge`] replaces its payload text, as a component written without the SDK could. (Building
//! 50 MiB through the SDK would serialize a `serde_json::Value`, needing twice the memory: the
//! guest would hit its memory limit before reaching the boundary, and test that instead.)
//!
//! Nothing here imports `wasi:filesystem` or `wasi:sockets`, so the host accepts the upload;
//! the crates beside this one are the ones it must refuse.

use std::hint::black_box;
use std::sync::Mutex;
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use waymark_guest::__export::journey as wit;
use waymark_guest::prelude::*;

/// The event that enrolls a customer.
pub const ENTRY_EVENT: &str = "signed_up";

/// The channel every send goes through.
pub const CHANNEL: &str = "webhook";

/// Text size of the `huge` payload.
pub const HUGE_PAYLOAD_BYTES: usize = 50 << 20;

/// How many commands `many` returns.
pub const MANY_COMMANDS: usize = 50_000;

/// How many commands `too_many` returns: few enough bytes that only a command limit refuses
/// them.
pub const TOO_MANY_COMMANDS: usize = 1_000;

/// What `panic` panics with; the host should record it in the failure's message.
pub const PANIC_MESSAGE: &str = "the hostile journey panics on purpose";

/// What `error` returns as its `Err`.
pub const GUEST_ERROR: &str = "the hostile journey refuses on purpose";

/// The name of the timer `odd_timer` schedules: a header-injection attempt, the store's key
/// separator, and 1 MiB of padding.
pub fn odd_timer_name() -> String {
    format!("nudge\r\nX-Injected: 1\u{1f}{}", "n".repeat(1 << 20))
}

/// The `bad_json` payload: an object that never ends.
pub const BAD_JSON: &str = r#"{"forged": "this payload never ends"#;

/// One way of misbehaving (or, for [`Behaviour::Behaves`] and [`Behaviour::Entropy`], of
/// behaving), selected by the event's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// `ok`: a normal send, the control group.
    Behaves,
    /// `spin`: an infinite loop.
    Spin,
    /// `bomb`: allocate until memory runs out.
    Bomb,
    /// `recurse`: unbounded recursion.
    Recurse,
    /// `huge`: a ~50 MiB payload across the boundary.
    Huge,
    /// `many`: 50,000 commands.
    Many,
    /// `too_many`: 1,000 commands.
    TooMany,
    /// `panic`: a Rust panic.
    Panic,
    /// `bad_json`: a send whose payload is not JSON.
    BadJson,
    /// `error`: `decide` returns `Err`.
    Error,
    /// `entropy`: report the clocks and randomness the guest sees.
    Entropy,
    /// `remember`: report and extend what this instance remembers of earlier calls.
    Remember,
    /// `echo`: send `echo`, and again on every delivery report of an `echo`: a loop that only
    /// the host's loop budgets stop.
    Echo,
    /// `odd_timer`: a send, then a timer whose name no id, key or header should carry.
    OddTimer,
}

impl Behaviour {
    /// Every behaviour, in the order of the table above.
    pub const ALL: [Behaviour; 14] = [
        Behaviour::Behaves,
        Behaviour::Spin,
        Behaviour::Bomb,
        Behaviour::Recurse,
        Behaviour::Huge,
        Behaviour::Many,
        Behaviour::TooMany,
        Behaviour::Panic,
        Behaviour::BadJson,
        Behaviour::Error,
        Behaviour::Entropy,
        Behaviour::Remember,
        Behaviour::Echo,
        Behaviour::OddTimer,
    ];

    /// The event name that selects this behaviour.
    pub fn event(self) -> &'static str {
        match self {
            Behaviour::Behaves => "ok",
            Behaviour::Spin => "spin",
            Behaviour::Bomb => "bomb",
            Behaviour::Recurse => "recurse",
            Behaviour::Huge => "huge",
            Behaviour::Many => "many",
            Behaviour::TooMany => "too_many",
            Behaviour::Panic => "panic",
            Behaviour::BadJson => "bad_json",
            Behaviour::Error => "error",
            Behaviour::Entropy => "entropy",
            Behaviour::Remember => "remember",
            Behaviour::Echo => "echo",
            Behaviour::OddTimer => "odd_timer",
        }
    }

    /// The behaviour an event selects, if any.
    pub fn from_event(name: &str) -> Option<Behaviour> {
        Behaviour::ALL.into_iter().find(|b| b.event() == name)
    }
}

/// The hostile journey.
pub struct Hostile;

impl Journey for Hostile {
    fn describe() -> Spec {
        Spec::new("Hostile: misbehaves in a different way for each event name")
            .enter_on(ENTRY_EVENT)
            .reentry(Reentry::Never)
            .channel(CHANNEL)
    }

    fn decide(ctx: &Context) -> Result<Decision, String> {
        if let Trigger::Delivery(report) = &ctx.trigger {
            return Ok(if report.template == ECHO {
                echo(ctx)
            } else {
                Decision::new()
            });
        }
        let Trigger::Event(event) = &ctx.trigger else {
            return Ok(Decision::new());
        };
        let Some(behaviour) = Behaviour::from_event(&event.name) else {
            return Ok(Decision::new());
        };
        Ok(match behaviour {
            Behaviour::Behaves => {
                Decision::new().send(CHANNEL, "ok", json!({ "customer_id": ctx.customer.id }))
            }
            Behaviour::Spin => spin(),
            Behaviour::Bomb => bomb(),
            Behaviour::Recurse => {
                let depth = recurse(0);
                Decision::new().set_state(depth.to_le_bytes().to_vec())
            }
            // Placeholders that `forge` fills in below the SDK.
            Behaviour::Huge => Decision::new().send(CHANNEL, "huge", json!({})),
            Behaviour::BadJson => Decision::new().send(CHANNEL, "bad_json", json!({})),
            Behaviour::Many => harmless_commands(MANY_COMMANDS),
            Behaviour::TooMany => harmless_commands(TOO_MANY_COMMANDS),
            Behaviour::Panic => panic!("{PANIC_MESSAGE}"),
            Behaviour::Error => return Err(GUEST_ERROR.to_string()),
            Behaviour::Entropy => entropy(ctx)?,
            Behaviour::Remember => remember(ctx),
            Behaviour::Echo => echo(ctx),
            Behaviour::OddTimer => Decision::new()
                .send(CHANNEL, "ok", json!({ "customer_id": ctx.customer.id }))
                .schedule(odd_timer_name(), ctx.now + 1_000),
        })
    }
}

/// `n` cancellations of a timer that was never scheduled: valid one by one, and without effect.
fn harmless_commands(n: usize) -> Decision {
    (0..n).fold(Decision::new(), |decision, _| {
        decision.cancel("never_scheduled")
    })
}

/// Burns CPU until the host interrupts it.
fn spin() -> ! {
    let mut n: u64 = 0;
    loop {
        n = black_box(n.wrapping_add(1));
    }
}

/// Allocates 1 MiB chunks, writing to every page of each so the memory is really used, and
/// keeps them all, until the allocator fails (which aborts).
fn bomb() -> ! {
    const CHUNK: usize = 1 << 20;
    const PAGE: usize = 4 << 10;
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        // A zeroed allocation may take fresh pages without writing them; so write them.
        let mut chunk = vec![0u8; CHUNK];
        for (i, byte) in chunk.iter_mut().step_by(PAGE).enumerate() {
            *byte = i as u8 | 1;
        }
        hoard.push(black_box(chunk));
    }
}

/// Recurses until the stack runs out. The result passes through `black_box` after each call,
/// so the compiler can neither turn the recursion into a loop nor drop it.
#[inline(never)]
fn recurse(depth: u64) -> u64 {
    if black_box(depth) == u64::MAX {
        return depth;
    }
    let below = recurse(black_box(depth + 1));
    black_box(below) ^ depth
}

/// What the guest's clocks and randomness say, as a send (and as state): what a careless
/// journey would base decisions on. The host must make all of it a function of the context.
fn entropy(ctx: &Context) -> Result<Decision, String> {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| format!("the wall clock reads before 1970: {e}"))?;
    let started = Instant::now();
    black_box((0..10_000u64).fold(0u64, |a, b| black_box(a.wrapping_mul(31).wrapping_add(b))));
    let elapsed = started.elapsed();
    let random = |e: getrandom::Error| format!("getrandom failed: {e}");
    let words = [
        getrandom::u64().map_err(random)?,
        getrandom::u64().map_err(random)?,
    ];
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(random)?;
    #[cfg(target_arch = "wasm32")]
    let (low, high) = wasip2::random::insecure_seed::insecure_seed();
    #[cfg(not(target_arch = "wasm32"))]
    let (low, high) = (0u64, 0u64);
    let payload = json!({
        "customer_id": ctx.customer.id,
        "context_now_ms": ctx.now,
        "context_seed": ctx.seed.to_string(),
        "wall_clock_ms": u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX),
        "wall_clock_subsec_nanos": since_epoch.subsec_nanos(),
        "monotonic_elapsed_ns": u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX),
        "random_u64": words.iter().map(|w| format!("{w:016x}")).collect::<Vec<_>>(),
        "random_bytes": hex(&bytes),
        "insecure_seed": format!("{high:016x}{low:016x}"),
    });
    Ok(Decision::new()
        .send(CHANNEL, "entropy", payload)
        .set_state(bytes.to_vec()))
}

/// The customers that `remember` saw in earlier calls of this instance: state kept in a global,
/// which outlives a call if the host reuses the instance.
/// The template `echo` sends, and answers the delivery reports of.
pub const ECHO: &str = "echo";

/// One more `echo`.
fn echo(ctx: &Context) -> Decision {
    Decision::new().send(CHANNEL, ECHO, json!({ "customer_id": ctx.customer.id }))
}

static SEEN: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Sends the customers earlier calls of this instance saw, then remembers this one: a guest
/// trying to learn about calls that are not its own.
fn remember(ctx: &Context) -> Decision {
    let mut seen = SEEN.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let before = seen.clone();
    seen.push(ctx.customer.id.clone());
    Decision::new().send(
        CHANNEL,
        "remember",
        json!({ "customer_id": ctx.customer.id, "seen_before": before }),
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Replaces the payload text of the placeholder sends that [`Hostile::decide`] returns for
/// `huge` and `bad_json` with what the SDK would never produce.
pub fn forge(commands: &mut [wit::Command]) {
    for command in commands {
        if let wit::Command::Send(send) = command {
            match send.template.as_str() {
                "huge" => send.payload = huge_payload(HUGE_PAYLOAD_BYTES),
                "bad_json" => send.payload = BAD_JSON.to_string(),
                _ => {}
            }
        }
    }
}

/// A valid JSON object of `bytes` bytes of text, `{"blob":"xxx…"}` (a little more if `bytes`
/// is too small for one), built in one allocation so that the guest's memory holds it with room
/// to spare: only the boundary should refuse it.
pub fn huge_payload(bytes: usize) -> String {
    const OPEN: &[u8] = br#"{"blob":""#;
    const CLOSE: &[u8] = br#""}"#;
    let len = bytes.max(OPEN.len() + CLOSE.len());
    let mut text = vec![b'x'; len];
    text[..OPEN.len()].copy_from_slice(OPEN);
    text[len - CLOSE.len()..].copy_from_slice(CLOSE);
    String::from_utf8(text).unwrap_or_default()
}

/// The component's exports: the SDK's conversions, then [`forge`]. (What
/// `waymark_guest::export_journey!` expands to, plus the forgery.)
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
struct Export;

impl wit::Guest for Export {
    fn describe() -> wit::Spec {
        waymark_guest::__export::describe::<Hostile>()
    }

    fn decide(context: wit::Context) -> Result<Vec<wit::Command>, String> {
        let mut commands = waymark_guest::__export::decide::<Hostile>(context)?;
        forge(&mut commands);
        Ok(commands)
    }
}

impl wit::exports::waymark::journey::migration::Guest for Export {
    fn migrate(
        context: wit::exports::waymark::journey::migration::MigrationContext,
    ) -> Result<Vec<wit::Command>, String> {
        waymark_guest::__export::migrate::<Hostile>(context)
    }
}

impl wit::exports::waymark::journey::audience::Guest for Export {
    fn describe_audience() -> wit::exports::waymark::journey::audience::AudienceSpec {
        waymark_guest::__export::describe_audience::<Hostile>()
    }
}

impl wit::exports::waymark::journey::allocation::Guest for Export {
    fn describe_allocation() -> Vec<wit::exports::waymark::journey::allocation::ExperimentAllocation>
    {
        waymark_guest::__export::describe_allocation::<Hostile>()
    }
}

// A component only (see `waymark_guest::export_journey!`).
#[cfg(target_arch = "wasm32")]
wit::export!(Export with_types_in waymark_guest::__export::journey);

#[cfg(test)]
mod tests {
    use super::*;
    use waymark_guest::Command;

    fn on(event: &str) -> Context {
        Context::on_event(Event::new(event))
            .for_customer(Customer::new("c-1"))
            .at(1_700_000_000_000)
            .with_seed(7)
    }

    #[test]
    fn every_behaviour_is_selected_by_its_own_event_name() {
        for behaviour in Behaviour::ALL {
            assert_eq!(Behaviour::from_event(behaviour.event()), Some(behaviour));
        }
        assert_eq!(Behaviour::from_event("signed_up"), None);
    }

    #[test]
    fn customers_enter_on_signup_and_nothing_happens_then() {
        let spec = Hostile::describe();
        assert_eq!(spec.entry.len(), 1);
        assert_eq!(spec.entry[0].event, ENTRY_EVENT);
        assert_eq!(spec.channels, vec![CHANNEL]);
        let entered = Context::entered(Event::new(ENTRY_EVENT));
        assert!(Hostile::decide(&entered).unwrap().is_empty());
        assert!(Hostile::decide(&on("page_viewed")).unwrap().is_empty());
    }

    #[test]
    fn ok_sends_through_the_webhook() {
        let decision = Hostile::decide(&on("ok")).unwrap();
        assert_eq!(
            decision.sends().collect::<Vec<_>>(),
            vec![(CHANNEL, "ok", &json!({ "customer_id": "c-1" }))]
        );
    }

    #[test]
    fn many_and_too_many_return_that_many_harmless_commands() {
        for (event, n) in [("many", MANY_COMMANDS), ("too_many", TOO_MANY_COMMANDS)] {
            let decision = Hostile::decide(&on(event)).unwrap();
            assert_eq!(decision.commands().len(), n, "{event}");
            assert!(decision
                .commands()
                .iter()
                .all(|c| *c == Command::Cancel("never_scheduled".into())));
        }
    }

    #[test]
    fn remember_reports_the_customers_earlier_calls_saw() {
        let first = Hostile::decide(&on("remember")).unwrap();
        let second = Hostile::decide(&on("remember")).unwrap();
        let seen = |d: &Decision| d.sends().next().expect("a send").2["seen_before"].clone();
        // Other tests of this process may have called it too: compare lengths, not contents.
        let (before, after) = (seen(&first), seen(&second));
        let (before, after) = (before.as_array().unwrap(), after.as_array().unwrap());
        assert!(after.len() > before.len());
        assert_eq!(after.last(), Some(&json!("c-1")));
    }

    #[test]
    fn error_is_an_err_from_decide() {
        assert_eq!(Hostile::decide(&on("error")).unwrap_err(), GUEST_ERROR);
    }

    #[test]
    #[should_panic(expected = "the hostile journey panics on purpose")]
    fn panic_panics_with_its_message() {
        let _ = Hostile::decide(&on("panic"));
    }

    fn wit_send(template: &str) -> wit::Command {
        use waymark_guest::__export::journey::waymark::journey::types::Send;
        wit::Command::Send(Send {
            channel: CHANNEL.into(),
            template: template.into(),
            payload: "{}".into(),
        })
    }

    fn payload(command: &wit::Command) -> &str {
        match command {
            wit::Command::Send(send) => &send.payload,
            _ => panic!("not a send"),
        }
    }

    #[test]
    fn huge_and_bad_json_placeholders_are_forged_and_other_sends_are_not() {
        for (event, template) in [("huge", "huge"), ("bad_json", "bad_json")] {
            let decision = Hostile::decide(&on(event)).unwrap();
            assert_eq!(
                decision.sends().map(|s| s.1).collect::<Vec<_>>(),
                vec![template]
            );
        }
        let mut commands = vec![wit_send("huge"), wit_send("bad_json"), wit_send("ok")];
        forge(&mut commands);

        let huge = payload(&commands[0]);
        assert_eq!(huge.len(), HUGE_PAYLOAD_BYTES);
        let parsed: Value = waymark_guest::serde_json::from_str(huge).expect("valid JSON");
        assert!(parsed["blob"].is_string());

        let bad = payload(&commands[1]);
        assert_eq!(bad, BAD_JSON);
        assert!(waymark_guest::serde_json::from_str::<Value>(bad).is_err());

        assert_eq!(payload(&commands[2]), "{}");
    }

    #[test]
    fn a_small_huge_payload_is_still_a_json_object() {
        for size in [0, 5, 12, 100] {
            let text = huge_payload(size);
            let parsed: Value = waymark_guest::serde_json::from_str(&text).expect("valid JSON");
            assert!(parsed.is_object(), "{text}");
        }
    }

    #[test]
    fn entropy_reports_the_clocks_and_randomness_beside_the_context() {
        let decision = Hostile::decide(&on("entropy")).unwrap();
        let sends: Vec<_> = decision.sends().collect();
        assert_eq!(sends.len(), 1);
        let (channel, template, payload) = sends[0];
        assert_eq!((channel, template), (CHANNEL, "entropy"));
        assert_eq!(payload["context_now_ms"], 1_700_000_000_000i64);
        assert_eq!(payload["context_seed"], "7");
        assert!(payload["wall_clock_ms"].as_u64().is_some(), "{payload}");
        assert!(
            payload["monotonic_elapsed_ns"].as_u64().is_some(),
            "{payload}"
        );
        let words = payload["random_u64"].as_array().expect("random words");
        assert_eq!(words.len(), 2);
        assert!(words
            .iter()
            .all(|w| w.as_str().is_some_and(|w| w.len() == 16)));
        assert_eq!(payload["random_bytes"].as_str().map(str::len), Some(32));
        assert!(matches!(
            decision.commands().last(),
            Some(Command::SetState(state)) if state.len() == 16
        ));
    }
}
