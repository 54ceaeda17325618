//! Per-tenant generator configuration: which generator answers by default, which
//! OpenAI-compatible endpoint and models the tenant may use, and its upstream API key (sealed
//! with the master key; only a fingerprint ever comes back out).
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::GeneratorKind;
use crate::domain::TenantId;
use crate::engine::Engine;
use crate::error::{InternalError, Result, UserError};
use crate::runtime::blocking;
use crate::secrets::{fingerprint, Secret, SecretError};
use crate::storage::catalog::KeyUpdate;

/// What is stored (as JSON) besides the sealed key.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeneratorSettings {
    pub default_generator: GeneratorKind,
    pub openai: Option<OpenAiSettings>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenAiSettings {
    /// Up to and including `/v1`, e.g. `http://127.0.0.1:8088/v1`.
    pub base_url: String,
    /// The models this tenant may ask for, besides the default model.
    pub allowed_models: Vec<String>,
    /// Used when a request names no model (the first allowed model otherwise); allowed by
    /// being the default.
    pub default_model: Option<String>,
    /// The model's context budget for retrieved chunks (tokens); the deployment's otherwise.
    pub context_tokens: Option<usize>,
    /// The admin set this `base_url`: it is reached as set, private addresses included. A
    /// tenant_admin's URL is reached through the public-only resolver (`egress`).
    #[serde(default)]
    pub set_by_admin: bool,
}

/// What an update does to the stored upstream API key.
#[derive(Debug)]
pub enum ApiKeyChange {
    Keep,
    Clear,
    Set(Secret),
}

/// A tenant's configuration as shown to the admin: never the key itself.
#[derive(Debug, Clone)]
pub struct TenantConfigView {
    pub settings: GeneratorSettings,
    pub api_key_fingerprint: Option<String>,
    pub updated_at: Option<i64>,
}

impl OpenAiSettings {
    /// Whether a request may name `model`: one of `allowed_models`, or the default.
    pub fn allows(&self, model: &str) -> bool {
        self.allowed_models.iter().any(|m| m == model)
            || self.default_model.as_deref() == Some(model)
    }
}

impl GeneratorSettings {
    /// Whether `self` keeps the `base_url` of `current` (the stored settings): a sealed key
    /// and the admin's trust belong to a URL, and go when it changes.
    pub fn keeps_url_of(&self, current: &GeneratorSettings) -> bool {
        match (&current.openai, &self.openai) {
            (Some(old), Some(new)) => old.base_url == new.base_url,
            _ => false,
        }
    }

    /// The admin's trust in `current`'s URL carries over only to the same URL.
    pub fn inherited_trust(&self, current: &GeneratorSettings) -> bool {
        self.keeps_url_of(current) && current.openai.as_ref().is_some_and(|o| o.set_by_admin)
    }

    pub fn validate(&self) -> Result<(), UserError> {
        let bad = |m: &str| Err(UserError::Invalid(m.to_string()));
        if self.default_generator == GeneratorKind::Openai && self.openai.is_none() {
            return bad("default_generator \"openai\" needs an \"openai\" section");
        }
        let Some(o) = &self.openai else { return Ok(()) };
        crate::egress::validate_syntax(&o.base_url)?;
        if o.allowed_models.is_empty() || o.allowed_models.len() > 64 {
            return bad("openai.allowed_models must list 1-64 models");
        }
        if o.allowed_models
            .iter()
            .chain(&o.default_model)
            .any(|m| m.is_empty() || m.chars().count() > 200 || m.chars().any(char::is_control))
        {
            return bad("openai.allowed_models: names of 1-200 characters");
        }
        if o.context_tokens
            .is_some_and(|t| !(256..=1_000_000).contains(&t))
        {
            return bad("openai.context_tokens must be between 256 and 1000000");
        }
        Ok(())
    }
}

fn secret_error(e: SecretError) -> crate::error::EngineError {
    match e {
        SecretError::NoMasterKey => UserError::Conflict(e.to_string()).into(),
        other => InternalError::Other(other.to_string()).into(),
    }
}

impl Engine {
    /// The tenant's generator configuration (defaults if never set). Admin only.
    pub async fn tenant_config(self: &Arc<Self>, tenant: TenantId) -> Result<TenantConfigView> {
        let me = self.clone();
        blocking(move || {
            if !me.catalog.tenant_exists(&tenant)? {
                return Err(UserError::NotFound("tenant").into());
            }
            me.config_view(&tenant)
        })
        .await
    }

    pub(crate) fn config_view(&self, tenant: &TenantId) -> Result<TenantConfigView> {
        Ok(match self.catalog.tenant_config(tenant)? {
            None => TenantConfigView {
                settings: GeneratorSettings::default(),
                api_key_fingerprint: None,
                updated_at: None,
            },
            Some(stored) => TenantConfigView {
                settings: serde_json::from_str(&stored.settings)
                    .map_err(|e| InternalError::Other(format!("stored tenant config: {e}")))?,
                api_key_fingerprint: stored.key_fingerprint,
                updated_at: Some(stored.updated_at),
            },
        })
    }

    /// Replace the tenant's generator settings; the API key is kept, cleared or replaced.
    ///
    /// A sealed key belongs to the `base_url` it was given for: a new URL without a new key
    /// drops it, so nobody can point the operator's key at another host. A tenant_admin's URL
    /// must be allow-listed or public (`egress`); the admin's is trusted as set.
    pub async fn put_tenant_config(
        self: &Arc<Self>,
        tenant: TenantId,
        mut settings: GeneratorSettings,
        key: ApiKeyChange,
        by_admin: bool,
    ) -> Result<TenantConfigView> {
        settings.validate()?;
        let me = self.clone();
        let t = tenant.clone();
        let stored = blocking(move || {
            if !me.catalog.tenant_exists(&t)? {
                return Err(UserError::NotFound("tenant").into());
            }
            me.config_view(&t)
        })
        .await?;
        let trusted = by_admin || settings.inherited_trust(&stored.settings);
        if let Some(o) = settings.openai.as_mut() {
            o.set_by_admin = trusted;
            if !trusted {
                crate::egress::check_tenant_url(&o.base_url, &self.config.answer.allowed_base_urls)
                    .await?;
            }
        }
        let me = self.clone();
        blocking(move || {
            // Read-compare-write of the key's URL under one lock, so a concurrent update that
            // sets a key for one URL cannot be paired with another update's URL.
            let _guard = me.config_writes.lock().unwrap_or_else(|p| p.into_inner());
            let same_url = settings.keeps_url_of(&me.config_view(&tenant)?.settings);
            let update = match key {
                ApiKeyChange::Keep if same_url => KeyUpdate::Keep,
                ApiKeyChange::Keep | ApiKeyChange::Clear => KeyUpdate::Clear,
                ApiKeyChange::Set(secret) => {
                    if secret.is_empty() || secret.expose().chars().count() > 4096 {
                        return Err(
                            UserError::Invalid("api_key must be 1-4096 characters".into()).into(),
                        );
                    }
                    KeyUpdate::Set {
                        sealed: me
                            .master_key
                            .seal(&tenant, secret.expose())
                            .map_err(secret_error)?,
                        fingerprint: fingerprint(secret.expose()),
                    }
                }
            };
            let json = serde_json::to_string(&settings)
                .map_err(|e| InternalError::Other(e.to_string()))?;
            me.catalog.put_tenant_config(&tenant, &json, update)?;
            me.config_view(&tenant)
        })
        .await
    }

    /// The tenant's upstream API key, decrypted for one outgoing request.
    pub(crate) fn upstream_key(&self, tenant: &TenantId) -> Result<Option<Secret>> {
        let Some(stored) = self.catalog.tenant_config(tenant)? else {
            return Ok(None);
        };
        stored
            .sealed_key
            .map(|s| self.master_key.open(tenant, &s).map_err(secret_error))
            .transpose()
    }
}
