//! Each tenant's effective settings — sandbox limits (the operator's defaults with the tenant's
//! overrides) and sending policy — read from the store once and cached, because every trigger
//! and delivery needs them. A change through the API calls [`Tenants::forget`].

use crate::model::{Limits, SendingPolicy};
use crate::store::{Store, StoreError};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// What the host keeps of a tenant's record.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantSettings {
    pub limits: Limits,
    pub policy: SendingPolicy,
}

/// The cache of every tenant's settings.
pub struct Tenants {
    defaults: Limits,
    cache: Mutex<HashMap<String, Arc<TenantSettings>>>,
}

impl Tenants {
    /// A cache over the operator's default limits.
    pub fn new(defaults: Limits) -> Tenants {
        Tenants {
            defaults,
            cache: Mutex::default(),
        }
    }

    /// `tenant`'s settings, from the cache or the store. An unknown tenant gets the defaults.
    pub fn settings(&self, store: &Store, tenant: &str) -> Result<Arc<TenantSettings>, StoreError> {
        if let Some(settings) = self.cache().get(tenant) {
            return Ok(settings.clone());
        }
        let record = store.tenant(tenant)?;
        let overrides = record.as_ref().map(|t| t.limits).unwrap_or_default();
        let settings = Arc::new(TenantSettings {
            limits: self.defaults.with(&overrides),
            policy: record.map(|t| t.policy).unwrap_or_default(),
        });
        self.cache().insert(tenant.to_string(), settings.clone());
        Ok(settings)
    }

    /// Forgets `tenant`'s cached settings after they changed (limits or policy).
    pub fn forget(&self, tenant: &str) {
        self.cache().remove(tenant);
    }

    /// Forgets every tenant's cached settings.
    pub fn forget_all(&self) {
        self.cache().clear();
    }

    fn cache(&self) -> MutexGuard<'_, HashMap<String, Arc<TenantSettings>>> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }
}
