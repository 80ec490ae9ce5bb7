//! Message templates, versioned per tenant:
//!
//! - `templates`: `tenant␟name␟version (u32 BE)` → [`TemplateVersion`], immutable once written.
//! - `template_heads`: `tenant␟name` → [`TemplateHead`]: the latest version, and whether the
//!   template was deleted.
//!
//! Deleting a template marks its head: it is no longer listed or shown, and new sends naming
//! it are no longer pinned to it, but its versions stay, so a message already pinned to one
//! still renders what it was created with. Uploading it again continues the numbering, so a
//! version number never names two contents.

use super::keys::{key, prefix};
use super::kv::Transactional;
use super::{abort, dec, enc, Store, StoreError};
use crate::model::Millis;
use crate::template::TemplateSource;
use serde::{Deserialize, Serialize};

/// One version of a template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TemplateVersion {
    pub name: String,
    pub version: u32,
    pub source: TemplateSource,
    pub created_at: Millis,
}

/// A template's latest version, and whether it is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateHead {
    pub latest: u32,
    #[serde(default)]
    pub deleted: bool,
    pub updated_at: Millis,
}

fn head_key(tenant: &str, name: &str) -> Vec<u8> {
    key(&[tenant.as_bytes(), name.as_bytes()])
}

fn version_key(tenant: &str, name: &str, version: u32) -> Vec<u8> {
    key(&[tenant.as_bytes(), name.as_bytes(), &version.to_be_bytes()])
}

impl Store {
    /// Stores `source` as the next version of `tenant`'s template `name` (1 for a new one,
    /// the last number plus one after a deletion), durably.
    pub async fn put_template(
        &self,
        tenant: &str,
        name: &str,
        source: &TemplateSource,
        now: Millis,
    ) -> Result<TemplateVersion, StoreError> {
        let hk = head_key(tenant, name);
        let stored = (&self.templates, &self.template_heads).transaction(|(versions, heads)| {
            let previous: Option<TemplateHead> = heads
                .get(&hk)?
                .map(|v| dec(&v))
                .transpose()
                .map_err(abort)?;
            let version = previous.map_or(1, |h| h.latest + 1);
            let record = TemplateVersion {
                name: name.to_string(),
                version,
                source: source.clone(),
                created_at: now,
            };
            versions.put(version_key(tenant, name, version), enc(&record))?;
            let head = TemplateHead {
                latest: version,
                deleted: false,
                updated_at: now,
            };
            heads.put(hk.as_slice(), enc(&head))?;
            Ok(record)
        })?;
        self.flush().await?;
        Ok(stored)
    }

    /// The head of a template that is not deleted.
    pub fn template_head(
        &self,
        tenant: &str,
        name: &str,
    ) -> Result<Option<TemplateHead>, StoreError> {
        Ok(self
            .template_heads
            .get(head_key(tenant, name))?
            .map(|v| dec::<TemplateHead>(&v))
            .transpose()?
            .filter(|h| !h.deleted))
    }

    /// Version `version` of a template, deleted or not: what a message pinned to it renders.
    pub fn template_version(
        &self,
        tenant: &str,
        name: &str,
        version: u32,
    ) -> Result<Option<TemplateVersion>, StoreError> {
        self.templates
            .get(version_key(tenant, name, version))?
            .map(|v| dec(&v))
            .transpose()
    }

    /// A template that is not deleted: its latest version, or `version`.
    pub fn template(
        &self,
        tenant: &str,
        name: &str,
        version: Option<u32>,
    ) -> Result<Option<TemplateVersion>, StoreError> {
        let Some(head) = self.template_head(tenant, name)? else {
            return Ok(None);
        };
        match version.unwrap_or(head.latest) {
            v if v == 0 || v > head.latest => Ok(None),
            v => self.template_version(tenant, name, v),
        }
    }

    /// The latest version of every template of a tenant that is not deleted, by name.
    pub fn templates(&self, tenant: &str) -> Result<Vec<TemplateVersion>, StoreError> {
        let mut out = Vec::new();
        for kv in self
            .template_heads
            .scan_prefix(prefix(&[tenant.as_bytes()]))
        {
            let (k, v) = kv?;
            let head: TemplateHead = dec(&v)?;
            if head.deleted {
                continue;
            }
            let name = String::from_utf8_lossy(&k[tenant.len() + 1..]).into_owned();
            if let Some(latest) = self.template_version(tenant, &name, head.latest)? {
                out.push(latest);
            }
        }
        Ok(out)
    }

    /// Deletes a template (see the module's doc: its versions stay for pinned messages).
    /// Returns whether there was one to delete.
    pub async fn delete_template(
        &self,
        tenant: &str,
        name: &str,
        now: Millis,
    ) -> Result<bool, StoreError> {
        let hk = head_key(tenant, name);
        let deleted = self.template_heads.transaction(|heads| {
            let Some(mut head) = heads
                .get(&hk)?
                .map(|v| dec::<TemplateHead>(&v))
                .transpose()
                .map_err(abort)?
            else {
                return Ok(false);
            };
            if head.deleted {
                return Ok(false);
            }
            head.deleted = true;
            head.updated_at = now;
            heads.put(hk.as_slice(), enc(&head))?;
            Ok(true)
        })?;
        if deleted {
            self.flush().await?;
        }
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::super::temp_store;
    use super::*;
    use crate::template::ChannelKind;
    use std::collections::BTreeMap;

    fn sms(text: &str) -> TemplateSource {
        TemplateSource {
            channel: ChannelKind::Sms,
            default_locale: "en".into(),
            locales: BTreeMap::from([(
                "en".into(),
                BTreeMap::from([("text".into(), text.into())]),
            )]),
        }
    }

    #[tokio::test]
    async fn each_upload_is_the_next_immutable_version() {
        let (_dir, store) = temp_store();
        let one = store
            .put_template("t", "welcome", &sms("one"), 1)
            .await
            .unwrap();
        let two = store
            .put_template("t", "welcome", &sms("two"), 2)
            .await
            .unwrap();
        let other = store
            .put_template("u", "welcome", &sms("u"), 3)
            .await
            .unwrap();
        assert_eq!((one.version, two.version, other.version), (1, 2, 1));
        let latest = store.template("t", "welcome", None).unwrap().unwrap();
        assert_eq!((latest.version, latest.source), (2, sms("two")));
        let first = store.template("t", "welcome", Some(1)).unwrap().unwrap();
        assert_eq!(first.source, sms("one"));
        assert!(store.template("t", "welcome", Some(3)).unwrap().is_none());
        assert!(store.template("t", "welcome", Some(0)).unwrap().is_none());
    }

    #[tokio::test]
    async fn a_deleted_template_is_gone_from_reads_but_its_versions_stay_for_pinned_messages() {
        let (_dir, store) = temp_store();
        store
            .put_template("t", "welcome", &sms("one"), 1)
            .await
            .unwrap();
        store
            .put_template("t", "nudge", &sms("n"), 1)
            .await
            .unwrap();
        assert!(store.delete_template("t", "welcome", 2).await.unwrap());
        assert!(!store.delete_template("t", "welcome", 3).await.unwrap());
        assert!(!store.delete_template("t", "absent", 3).await.unwrap());
        assert!(store.template("t", "welcome", None).unwrap().is_none());
        assert!(store.template_head("t", "welcome").unwrap().is_none());
        assert_eq!(
            store
                .template_version("t", "welcome", 1)
                .unwrap()
                .unwrap()
                .source,
            sms("one")
        );
        let names: Vec<_> = store
            .templates("t")
            .unwrap()
            .into_iter()
            .map(|t| t.name)
            .collect();
        assert_eq!(names, ["nudge"]);
        let again = store
            .put_template("t", "welcome", &sms("again"), 4)
            .await
            .unwrap();
        assert_eq!(again.version, 2, "numbering goes on after a deletion");
    }

    #[tokio::test]
    async fn a_tenant_lists_only_its_own_templates() {
        let (_dir, store) = temp_store();
        for (tenant, name) in [("t", "b"), ("t", "a"), ("tt", "c")] {
            store
                .put_template(tenant, name, &sms("x"), 1)
                .await
                .unwrap();
        }
        let names: Vec<_> = store
            .templates("t")
            .unwrap()
            .into_iter()
            .map(|t| t.name)
            .collect();
        assert_eq!(names, ["a", "b"]);
    }
}
