//! Tasks: the store's handoff record as the API shows it.

use crate::model::TaskStatus;
use crate::store::Task;
use waymark_api::tasks as api;

impl From<Task> for api::Task {
    fn from(task: Task) -> Self {
        let Task {
            id,
            tenant,
            customer,
            journey,
            enrollment,
            queue,
            reason,
            priority,
            status,
            created_at,
            assignee,
            claimed_at,
            resolved_at,
            resolution,
        } = task;
        api::Task {
            id,
            tenant,
            customer,
            journey,
            enrollment,
            queue,
            reason,
            priority,
            status: status.into(),
            created_at,
            assignee,
            claimed_at,
            resolved_at,
            resolution,
        }
    }
}

impl From<TaskStatus> for api::TaskStatus {
    fn from(status: TaskStatus) -> Self {
        match status {
            TaskStatus::Open => api::TaskStatus::Open,
            TaskStatus::Claimed => api::TaskStatus::Claimed,
            TaskStatus::Resolved => api::TaskStatus::Resolved,
        }
    }
}
