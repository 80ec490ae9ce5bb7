//! Backtests (issue 13): a journey version replayed over the tenant's recorded events in an
//! isolated engine, compared with the live version replayed over the same events.
//!
//! - `candidate` — what a backtest tries: a stored version, or component bytes validated as an
//!   upload is, in the backtest's own sandbox, and never stored.
//! - `engine` — [`engine::IsolatedEngine`]: the host's own worker path on a scratch store and
//!   a manual clock, deliveries taken as delivered; nothing leaves it.
//! - `run` — one replay (which events, which version), and a whole backtest: both replays and
//!   their reports, with progress and cancellation.
//! - `parts` — the history read once, and each replay split into parts
//!   of its customers, a few at a time, each on a scratch store of its own, then combined.
//! - `diff` — pure: the two replays compared (milestones, exits, sends, paths, per customer).
//! - `fidelity` — pure: the live version's replay checked against what ran live.
//! - `gathered` — pure: a backtest run on several partitions (cluster mode) read as one.
//! - `jobs` — backtests as background jobs, one at a time on the host, kept in the store so
//!   they survive a restart (unfinished ones start over).
//! - `simulate` — `waymark simulate`: one journey over a file of events, no server.

pub mod candidate;
pub mod diff;
pub mod engine;
pub mod fidelity;
pub mod gathered;
pub mod jobs;
pub mod parts;
pub mod run;
pub mod simulate;

pub use jobs::Jobs;
