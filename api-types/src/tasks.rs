//! Tasks (tenant): the handoff queue a journey's `handoff` command fills. `GET /v1/tasks`,
//! `GET /v1/tasks/{id}`, `POST /v1/tasks/{id}/claim`, `POST /v1/tasks/{id}/resolve`.

use crate::{Millis, Object};
use serde::{Deserialize, Serialize};

/// A human handoff (the host's `store::Task`, same shape).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Task {
    /// The task's id.
    pub id: String,
    /// The tenant.
    pub tenant: String,
    /// Who it is about.
    pub customer: String,
    /// The journey that handed off.
    pub journey: String,
    /// The enrollment that handed off.
    pub enrollment: String,
    /// The queue.
    pub queue: String,
    /// Why, for people.
    pub reason: String,
    /// Lower is more urgent.
    pub priority: u8,
    /// Open, claimed or resolved.
    pub status: TaskStatus,
    /// When it was handed off.
    pub created_at: Millis,
    /// Who claimed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignee: Option<String>,
    /// When it was claimed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claimed_at: Option<Millis>,
    /// When it was resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<Millis>,
    /// How it was resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<String>,
}

/// Where a task is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    /// Nobody has it.
    Open,
    /// Someone works on it.
    Claimed,
    /// Done; the journey heard `task_resolved`.
    Resolved,
}

impl TaskStatus {
    /// The wire spelling (also the query's).
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Open => "open",
            TaskStatus::Claimed => "claimed",
            TaskStatus::Resolved => "resolved",
        }
    }
}

impl PartialEq<&str> for TaskStatus {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// The answer to `GET /v1/tasks`: most urgent (lowest priority) and oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct TaskList {
    /// The tasks.
    pub tasks: Vec<Task>,
}

/// The query of `GET /v1/tasks` (`?status=open&queue=cs&limit=10`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct TaskQuery {
    /// Only tasks in this status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<TaskStatus>,
    /// Only tasks of this queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    /// At most this many (default 100, at most 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
}

/// The body of `POST /v1/tasks/{id}/claim`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ClaimTask {
    /// Who takes it; not empty.
    pub assignee: String,
}

/// The body of `POST /v1/tasks/{id}/resolve`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ResolveTask {
    /// How it ended; not empty. Passed to the journey in `task_resolved`.
    pub resolution: String,
    /// More properties for the `task_resolved` event.
    #[serde(default)]
    pub properties: Object,
}
