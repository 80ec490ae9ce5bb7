//! Dashboard sessions (issue 14): `ui_sessions`: SHA-256 of the session id (hex) →
//! [`UiSession`]. The id itself lives only in the browser's cookie, so a copy of the data
//! directory holds nothing a browser could present. A session names the key it was opened
//! with (by digest): the dashboard checks that key on every request, so revoking it ends the
//! session at once, as signing out does by deleting the record.

use super::{dec, enc, Store, StoreError};
use crate::model::Millis;
use serde::{Deserialize, Serialize};

/// One signed-in browser.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UiSession {
    pub tenant: String,
    /// SHA-256 (hex) of the key that signed in: looked up again on every request.
    pub key_digest: String,
    /// The synchronizer token every form of this session carries (random, 256 bits, hex).
    pub csrf: String,
    pub created_at: Millis,
    /// Wall-clock time after which the session is refused (and removed when next seen).
    pub expires_at: Millis,
}

impl Store {
    /// Stores a new session under `id_digest`, forgetting every expired one (a sign-in is
    /// rare, and the tree holds one record per open browser), and flushes.
    pub async fn create_ui_session(
        &self,
        id_digest: &str,
        session: &UiSession,
        now: Millis,
    ) -> Result<(), StoreError> {
        for kv in self.ui_sessions.iter() {
            let (k, v) = kv?;
            let expired = dec::<UiSession>(&v).map_or(true, |s| s.expires_at <= now);
            if expired {
                self.ui_sessions.remove(k)?;
            }
        }
        self.ui_sessions
            .insert(id_digest.as_bytes(), enc(session))?;
        self.flush().await
    }

    /// The session stored under `id_digest`, if it has not expired at `now`.
    pub fn ui_session(
        &self,
        id_digest: &str,
        now: Millis,
    ) -> Result<Option<UiSession>, StoreError> {
        let Some(v) = self.ui_sessions.get(id_digest.as_bytes())? else {
            return Ok(None);
        };
        let session: UiSession = dec(&v)?;
        if session.expires_at <= now {
            self.ui_sessions.remove(id_digest.as_bytes())?;
            return Ok(None);
        }
        Ok(Some(session))
    }

    /// Ends a session (sign-out), durably.
    pub async fn delete_ui_session(&self, id_digest: &str) -> Result<(), StoreError> {
        self.ui_sessions.remove(id_digest.as_bytes())?;
        self.flush().await
    }
}

#[cfg(test)]
mod tests {
    use super::super::temp_store;
    use super::*;

    fn session(expires_at: Millis) -> UiSession {
        UiSession {
            tenant: "t".into(),
            key_digest: "k".into(),
            csrf: "c".into(),
            created_at: 0,
            expires_at,
        }
    }

    #[tokio::test]
    async fn a_session_reads_back_until_it_expires_or_is_deleted() {
        let (_dir, store) = temp_store();
        store
            .create_ui_session("a", &session(100), 0)
            .await
            .unwrap();
        assert_eq!(store.ui_session("a", 99).unwrap(), Some(session(100)));
        assert_eq!(store.ui_session("b", 99).unwrap(), None);
        assert_eq!(store.ui_session("a", 100).unwrap(), None);
        store
            .create_ui_session("c", &session(200), 0)
            .await
            .unwrap();
        store.delete_ui_session("c").await.unwrap();
        assert_eq!(store.ui_session("c", 1).unwrap(), None);
    }

    #[tokio::test]
    async fn signing_in_forgets_expired_sessions() {
        let (_dir, store) = temp_store();
        store
            .create_ui_session("old", &session(10), 0)
            .await
            .unwrap();
        store
            .create_ui_session("new", &session(100), 50)
            .await
            .unwrap();
        assert_eq!(store.ui_sessions.len(), 1);
    }
}
