//! Human handoffs: `tasks`: `tenant␟task id` → [`Task`]. Created by
//! [`commit_trigger`](super::Store::commit_trigger); claimed and resolved over the API.
//!
//! The store keeps the task's state machine (open → claimed → resolved, with conflicts typed
//! by [`TaskStatus`]) but not its meaning: the event that tells the customer's journeys about a
//! resolution is composed by the caller and appended here through the same dedup-and-append
//! write as ingest.

use super::events::{self, EventTrees, Ingested};
use super::keys::{key, prefix};
use super::kv::Transactional;
use super::{abort, dec, enc, Store, StoreError};
use crate::model::{Event, Millis, TaskStatus};
use serde::{Deserialize, Serialize};

/// A human handoff in a tenant's queue.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Task {
    pub id: String,
    pub tenant: String,
    pub customer: String,
    pub journey: String,
    pub enrollment: String,
    pub queue: String,
    pub reason: String,
    pub priority: u8,
    pub status: TaskStatus,
    pub created_at: Millis,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignee: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claimed_at: Option<Millis>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<Millis>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<String>,
}

/// Why a task could not change as asked.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// There is no such task.
    #[error("no task {0:?}")]
    NotFound(String),
    /// The task's status does not allow the change.
    #[error("task {id:?} is {status}")]
    Conflict { id: String, status: TaskStatus },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A task's key.
pub(super) fn task_key(tenant: &str, id: &str) -> Vec<u8> {
    key(&[tenant.as_bytes(), id.as_bytes()])
}

impl Store {
    /// One task, by id.
    pub fn task(&self, tenant: &str, id: &str) -> Result<Option<Task>, StoreError> {
        self.tasks
            .get(task_key(tenant, id))?
            .map(|v| dec(&v))
            .transpose()
    }

    /// Every task of a tenant, by id.
    pub fn tasks(&self, tenant: &str) -> Result<Vec<Task>, StoreError> {
        self.tasks
            .scan_prefix(prefix(&[tenant.as_bytes()]))
            .map(|kv| dec(&kv?.1))
            .collect()
    }

    /// Claims an open task for `assignee` and flushes; a task that is not open is a conflict.
    pub async fn claim_task(
        &self,
        tenant: &str,
        id: &str,
        assignee: &str,
        now: Millis,
    ) -> Result<Task, TaskError> {
        let k = task_key(tenant, id);
        let claimed = self
            .tasks
            .transaction(|tasks| {
                let Some(v) = tasks.get(&k)? else {
                    return Ok(Err(TaskError::NotFound(id.to_string())));
                };
                let mut task: Task = dec(&v).map_err(abort)?;
                if task.status != TaskStatus::Open {
                    return Ok(Err(TaskError::Conflict {
                        id: id.to_string(),
                        status: task.status,
                    }));
                }
                task.status = TaskStatus::Claimed;
                task.assignee = Some(assignee.to_string());
                task.claimed_at = Some(now);
                tasks.put(k.as_slice(), enc(&task))?;
                Ok(Ok(task))
            })
            .map_err(StoreError::from)??;
        self.flush().await?;
        Ok(claimed)
    }

    /// Resolves an open or claimed task and, in the same transaction, appends `event` (composed
    /// by the caller: what the customer's journeys are told) to the event log and the queue of
    /// `event.customer`, deduplicated by id within `window` like any ingested event; then
    /// flushes. A resolved task is a conflict, and nothing is appended.
    pub async fn resolve_task(
        &self,
        tenant: &str,
        id: &str,
        resolution: &str,
        event: &Event,
        now: Millis,
        window: Option<Millis>,
    ) -> Result<Task, TaskError> {
        let k = task_key(tenant, id);
        let entry = self.stage_event(tenant, event)?;
        let trees = (&self.tasks, &self.events, &self.event_ids, &self.queue);
        let resolved = trees
            .transaction(|(tasks, log, ids, queue)| {
                let Some(v) = tasks.get(&k)? else {
                    return Ok(Err(TaskError::NotFound(id.to_string())));
                };
                let mut task: Task = dec(&v).map_err(abort)?;
                if task.status == TaskStatus::Resolved {
                    return Ok(Err(TaskError::Conflict {
                        id: id.to_string(),
                        status: task.status,
                    }));
                }
                task.status = TaskStatus::Resolved;
                task.resolved_at = Some(now);
                task.resolution = Some(resolution.to_string());
                tasks.put(k.as_slice(), enc(&task))?;
                let trees = EventTrees { log, ids, queue };
                // A duplicate id (the same resolution event, appended before) is dropped.
                let _: Ingested = events::append(&trees, tenant, event, &entry, now, window)?;
                Ok(Ok(task))
            })
            .map_err(StoreError::from)??;
        self.flush().await?;
        Ok(resolved)
    }
}

#[cfg(test)]
mod tests {
    use super::super::queue::Pending;
    use super::super::{fixtures, temp_store};
    use super::*;

    fn resolved_event(task: &str, customer: &str) -> Event {
        Event {
            id: format!("{task}:resolved"),
            customer: customer.into(),
            name: "task_resolved".into(),
            properties: Default::default(),
            timestamp: 50,
        }
    }

    fn open(store: &Store, ids: &[&str]) {
        let mut commit = fixtures::commit(store, "t", "alice");
        for id in ids {
            commit.tasks.push(fixtures::task(id));
        }
        store.commit_trigger(&commit).unwrap();
    }

    fn queued_events(store: &Store) -> Vec<Event> {
        (0..store.shards())
            .flat_map(|shard| store.queued(shard, 100).unwrap())
            .filter_map(|(k, q)| match q.pending {
                Pending::Logged => store.logged_event(&q.tenant, &k).unwrap(),
                _ => None,
            })
            .collect()
    }

    #[tokio::test]
    async fn a_task_is_claimed_once_and_a_second_claim_names_its_status() {
        let (_dir, store) = temp_store();
        open(&store, &["k1"]);
        let claimed = store.claim_task("t", "k1", "ann", 10).await.unwrap();
        assert_eq!(claimed.status, TaskStatus::Claimed);
        assert_eq!(claimed.assignee.as_deref(), Some("ann"));
        let again = store.claim_task("t", "k1", "bob", 11).await;
        assert!(matches!(
            again,
            Err(TaskError::Conflict {
                status: TaskStatus::Claimed,
                ..
            })
        ));
        let stored = store.task("t", "k1").unwrap().unwrap();
        assert_eq!(stored.assignee.as_deref(), Some("ann"));
        assert!(matches!(
            store.claim_task("t", "nope", "ann", 12).await,
            Err(TaskError::NotFound(_))
        ));
    }

    #[tokio::test]
    async fn resolving_appends_the_given_event_once() {
        let (_dir, store) = temp_store();
        open(&store, &["k1"]);
        let event = resolved_event("k1", "alice");
        let task = store
            .resolve_task("t", "k1", "called back", &event, 50, Some(1_000))
            .await
            .unwrap();
        assert_eq!(task.status, TaskStatus::Resolved);
        assert_eq!(task.resolution.as_deref(), Some("called back"));
        assert_eq!(queued_events(&store), std::slice::from_ref(&event));
        assert_eq!(store.events.len(), 1);

        let again = store
            .resolve_task("t", "k1", "twice", &event, 60, Some(1_000))
            .await;
        assert!(matches!(
            again,
            Err(TaskError::Conflict {
                status: TaskStatus::Resolved,
                ..
            })
        ));
        assert_eq!(queued_events(&store).len(), 1);
        assert_eq!(
            store
                .task("t", "k1")
                .unwrap()
                .unwrap()
                .resolution
                .as_deref(),
            Some("called back")
        );
    }

    #[tokio::test]
    async fn a_claim_after_resolution_is_a_conflict() {
        let (_dir, store) = temp_store();
        open(&store, &["k1"]);
        store
            .resolve_task("t", "k1", "done", &resolved_event("k1", "alice"), 5, None)
            .await
            .unwrap();
        assert!(matches!(
            store.claim_task("t", "k1", "ann", 6).await,
            Err(TaskError::Conflict {
                status: TaskStatus::Resolved,
                ..
            })
        ));
    }

    #[tokio::test]
    async fn the_resolution_event_is_deduplicated_by_id_within_the_window() {
        let (_dir, store) = temp_store();
        open(&store, &["k1", "k2"]);
        // The caller's event id was ingested already, within the window: the task resolves,
        // the event is not appended twice.
        let event = resolved_event("k1", "alice");
        store
            .ingest("t", std::slice::from_ref(&event), 0, Some(1_000))
            .await
            .unwrap();
        store
            .resolve_task("t", "k1", "done", &event, 500, Some(1_000))
            .await
            .unwrap();
        assert_eq!(queued_events(&store).len(), 1);
        // Outside the window the same id is a new event, as for ingest.
        let mut late = resolved_event("k2", "alice");
        late.id = event.id.clone();
        store
            .resolve_task("t", "k2", "done", &late, 5_000, Some(1_000))
            .await
            .unwrap();
        assert_eq!(queued_events(&store).len(), 2);
        assert_eq!(store.events.len(), 2);
    }

    #[tokio::test]
    async fn resolving_a_missing_task_appends_nothing() {
        let (_dir, store) = temp_store();
        let result = store
            .resolve_task(
                "t",
                "ghost",
                "x",
                &resolved_event("ghost", "alice"),
                1,
                None,
            )
            .await;
        assert!(matches!(result, Err(TaskError::NotFound(_))));
        assert!(queued_events(&store).is_empty());
    }

    #[tokio::test]
    async fn tasks_list_per_tenant() {
        let (_dir, store) = temp_store();
        open(&store, &["k2", "k1"]);
        let ids: Vec<String> = store
            .tasks("t")
            .unwrap()
            .into_iter()
            .map(|t| t.id)
            .collect();
        assert_eq!(ids, ["k1", "k2"]);
        assert!(store.tasks("u").unwrap().is_empty());
    }
}
