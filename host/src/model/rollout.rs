//! Which versions of a journey take new entrants: the live one, and during a rollout a
//! candidate for a share of customers. Uploading as a draft stores a version that no one enters
//! until it is promoted; promoting makes a version live (or, with a share, the candidate);
//! rolling back stops a rollout, or else returns to the version live before.
//!
//! Enrollments stay on the version they entered; only new runs follow these pointers.

use serde::{Deserialize, Serialize};

/// How many earlier live versions a journey remembers for rolling back.
pub const ROLLBACK_DEPTH: usize = 16;

/// A journey's version pointers, stored beside its versions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rollout {
    /// The newest stored version (live or draft).
    pub latest: u32,
    /// The version new entrants run; `None` while only drafts exist.
    pub live: Option<u32>,
    /// Versions live before `live`, oldest first (at most [`ROLLBACK_DEPTH`]).
    pub previous: Vec<u32>,
    /// A version taking a share of new entrants.
    pub candidate: Option<Candidate>,
}

/// A version being rolled out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Candidate {
    pub version: u32,
    /// Of every 100 new entrants (by a hash of the customer), this many enter it: 1 to 99.
    pub percent: u8,
}

/// How an upload is staged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// New entrants run it at once (what an upload always did).
    Live,
    /// Stored, entered by no one until promoted.
    Draft,
}

/// A change of a journey's pointers asked through the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RolloutChange {
    /// Make `version` live, or with `percent` the candidate for that share.
    Promote { version: u32, percent: Option<u8> },
    /// Stop the rollout if there is one; else make the previous live version live again.
    Rollback,
}

/// Why a change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RolloutError {
    #[error("the journey has no version {0}")]
    NoSuchVersion(u32),
    #[error("a rollout share is a percentage from 1 to 99, not {0}")]
    BadShare(u8),
    #[error("version {0} is live already")]
    AlreadyLive(u32),
    #[error("there is no rollout to stop and no earlier live version to return to")]
    NothingToRollBack,
}

impl Rollout {
    /// The pointers of a journey stored before versions could be staged: its newest version
    /// is live, as every upload was.
    pub fn legacy(latest: u32) -> Rollout {
        Rollout {
            latest,
            live: Some(latest),
            previous: Vec::new(),
            candidate: None,
        }
    }

    /// The pointers after storing version `self.latest + 1` (or the first version, when
    /// `self` is `None`) staged as `stage`.
    pub fn uploaded(current: Option<Rollout>, stage: Stage) -> Rollout {
        let mut next = current.unwrap_or(Rollout {
            latest: 0,
            live: None,
            previous: Vec::new(),
            candidate: None,
        });
        next.latest += 1;
        if stage == Stage::Live {
            next.make_live(next.latest);
        }
        next
    }

    /// The pointers after `change`, given that versions `1..=self.latest` exist.
    pub fn changed(&self, change: RolloutChange) -> Result<Rollout, RolloutError> {
        let mut next = self.clone();
        match change {
            RolloutChange::Promote { version, percent } => {
                if version == 0 || version > self.latest {
                    return Err(RolloutError::NoSuchVersion(version));
                }
                match percent {
                    None | Some(100) => {
                        if self.live == Some(version) && self.candidate.is_none() {
                            return Err(RolloutError::AlreadyLive(version));
                        }
                        next.make_live(version);
                    }
                    Some(p) if (1..=99).contains(&p) => {
                        if self.live == Some(version) {
                            return Err(RolloutError::AlreadyLive(version));
                        }
                        match self.live {
                            // Nothing live yet: a share of nobody's entrants means nothing.
                            None => next.make_live(version),
                            Some(_) => {
                                next.candidate = Some(Candidate {
                                    version,
                                    percent: p,
                                })
                            }
                        }
                    }
                    Some(p) => return Err(RolloutError::BadShare(p)),
                }
            }
            RolloutChange::Rollback => {
                if next.candidate.take().is_none() {
                    let back = next.previous.pop().ok_or(RolloutError::NothingToRollBack)?;
                    next.live = Some(back);
                }
            }
        }
        Ok(next)
    }

    fn make_live(&mut self, version: u32) {
        if let Some(live) = self.live.filter(|&live| live != version) {
            self.previous.push(live);
            if self.previous.len() > ROLLBACK_DEPTH {
                self.previous.remove(0);
            }
        }
        self.live = Some(version);
        self.candidate = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uploads_go_live_unless_drafts() {
        let one = Rollout::uploaded(None, Stage::Live);
        assert_eq!((one.latest, one.live), (1, Some(1)));
        let two = Rollout::uploaded(Some(one), Stage::Draft);
        assert_eq!((two.latest, two.live), (2, Some(1)));
        let three = Rollout::uploaded(Some(two), Stage::Live);
        assert_eq!(
            (three.latest, three.live, three.previous),
            (3, Some(3), vec![1])
        );
        let draft_only = Rollout::uploaded(None, Stage::Draft);
        assert_eq!((draft_only.latest, draft_only.live), (1, None));
    }

    #[test]
    fn promote_rollout_and_rollback() {
        let r = Rollout::uploaded(Some(Rollout::legacy(1)), Stage::Draft);
        let rolling = r
            .changed(RolloutChange::Promote {
                version: 2,
                percent: Some(20),
            })
            .unwrap();
        assert_eq!(rolling.live, Some(1));
        assert_eq!(
            rolling.candidate,
            Some(Candidate {
                version: 2,
                percent: 20
            })
        );
        // Rolling back a rollout stops it; the live version stays.
        let stopped = rolling.changed(RolloutChange::Rollback).unwrap();
        assert_eq!((stopped.live, stopped.candidate), (Some(1), None));
        // Promoting fully makes it live and remembers the one before.
        let full = rolling
            .changed(RolloutChange::Promote {
                version: 2,
                percent: None,
            })
            .unwrap();
        assert_eq!(
            (full.live, full.candidate, full.previous.clone()),
            (Some(2), None, vec![1])
        );
        let back = full.changed(RolloutChange::Rollback).unwrap();
        assert_eq!((back.live, back.previous.len()), (Some(1), 0));
        assert_eq!(
            back.changed(RolloutChange::Rollback),
            Err(RolloutError::NothingToRollBack)
        );
    }

    #[test]
    fn refusals() {
        let r = Rollout::legacy(2);
        let promote = |version, percent| r.changed(RolloutChange::Promote { version, percent });
        assert_eq!(promote(3, None), Err(RolloutError::NoSuchVersion(3)));
        assert_eq!(promote(0, None), Err(RolloutError::NoSuchVersion(0)));
        assert_eq!(promote(1, Some(0)), Err(RolloutError::BadShare(0)));
        assert_eq!(promote(1, Some(101)), Err(RolloutError::BadShare(101)));
        assert_eq!(promote(2, None), Err(RolloutError::AlreadyLive(2)));
        assert_eq!(promote(2, Some(50)), Err(RolloutError::AlreadyLive(2)));
        // Promoting an older version is how a tenant rolls forward to a known one.
        assert_eq!(promote(1, None).unwrap().live, Some(1));
    }

    #[test]
    fn rollback_depth_is_bounded() {
        let mut r = Rollout::uploaded(None, Stage::Live);
        for _ in 0..40 {
            r = Rollout::uploaded(Some(r), Stage::Live);
        }
        assert_eq!(r.previous.len(), ROLLBACK_DEPTH);
        assert_eq!(r.previous.last(), Some(&40));
    }
}
