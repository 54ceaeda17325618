//! Tenants, their keys and credentials, and their limits (delegated to the governor).
use std::sync::Arc;

use super::*;

pub struct CreatedKey {
    pub key: KeyRecord,
    /// The whole bearer token; shown once, never stored.
    pub token: String,
}

impl Engine {
    // ---- auth and tenants (admin) ----

    /// Who a bearer credential is: the admin key, a tenant API key, or a JWT. Revoked keys fail
    /// on the next request (no cache).
    pub async fn authenticate(
        self: &Arc<Self>,
        token: &str,
    ) -> Result<std::result::Result<Principal, AuthError>> {
        if keys::ct_eq(token.as_bytes(), self.admin_key.as_bytes()) {
            return Ok(Ok(Principal::Admin));
        }
        if let Some((key_id, secret)) = keys::split(token) {
            let (key_id, hash) = (key_id.to_string(), keys::hash(secret));
            let me = self.clone();
            return blocking(move || {
                Ok(match me.catalog.key(&key_id)? {
                    Some((k, stored)) if keys::ct_eq(&stored, &hash) => Ok(Principal::Tenant(
                        TenantCtx::authenticated(k.tenant, format!("key:{}", k.id)),
                        k.role,
                    )),
                    _ => Err(AuthError::InvalidKey),
                })
            })
            .await;
        }
        if token.split('.').count() != 3 {
            return Ok(Err(AuthError::InvalidKey));
        }
        let Some(jwt) = &self.jwt else {
            return Ok(Err(AuthError::InvalidToken("JWT is not configured")));
        };
        let (tenant, role, issued_at, subject) = match jwt.verify(token) {
            Ok(v) => v,
            Err(e) => return Ok(Err(e)),
        };
        let me = self.clone();
        blocking(move || {
            // A tenant id can be deleted and created again: a token issued before this
            // tenant existed was issued for another one, and never works for this one.
            Ok(match me.catalog.tenant_created_at(&tenant)? {
                Some(created) if issued_at >= created => Ok(Principal::Tenant(
                    TenantCtx::authenticated(tenant, format!("jwt:{subject}")),
                    role,
                )),
                Some(_) => Err(AuthError::InvalidToken(
                    "token issued before its tenant was created",
                )),
                None => Err(AuthError::InvalidToken("unknown tenant")),
            })
        })
        .await
    }

    pub async fn create_tenant(self: &Arc<Self>, tenant: TenantId) -> Result<CreatedKey> {
        let me = self.clone();
        blocking(move || {
            // Nothing of an earlier tenant of this name may show: finish its removal first.
            if me.catalog.pending_drops()?.contains(&tenant) {
                me.finish_drop(&tenant, Duration::from_secs(10))?;
            }
            me.catalog.create_tenant(&tenant)?;
            me.new_key(&tenant, Role::TenantAdmin, "initial")
        })
        .await
    }

    fn new_key(&self, tenant: &TenantId, role: Role, name: &str) -> Result<CreatedKey> {
        let k = keys::generate();
        let key = KeyRecord {
            id: k.key_id,
            tenant: tenant.clone(),
            role,
            name: name.to_string(),
            created_at: crate::domain::now(),
        };
        self.catalog.insert_key(&key, &k.hash)?;
        Ok(CreatedKey {
            key,
            token: k.token,
        })
    }

    /// A new key for the tenant (the admin, or the tenant's own `tenant_admin`).
    pub async fn create_key(
        self: &Arc<Self>,
        tenant: TenantId,
        role: Role,
        name: String,
    ) -> Result<CreatedKey> {
        if name.len() > 128 || name.chars().any(char::is_control) {
            return Err(UserError::Invalid(
                "key name: at most 128 characters, no control characters".into(),
            )
            .into());
        }
        let me = self.clone();
        blocking(move || {
            if !me.catalog.tenant_exists(&tenant)? {
                return Err(UserError::NotFound("tenant").into());
            }
            me.new_key(&tenant, role, &name)
        })
        .await
    }

    pub async fn list_keys(self: &Arc<Self>, tenant: TenantId) -> Result<Vec<KeyRecord>> {
        let me = self.clone();
        blocking(move || {
            if !me.catalog.tenant_exists(&tenant)? {
                return Err(UserError::NotFound("tenant").into());
            }
            me.catalog.keys_of(&tenant)
        })
        .await
    }

    /// Revoke a key. `scope` is the caller's tenant (a `tenant_admin`), or `None` for the admin;
    /// another tenant's key is "not found", exactly like a key that does not exist.
    pub async fn revoke_key(
        self: &Arc<Self>,
        scope: Option<TenantCtx>,
        key_id: String,
    ) -> Result<()> {
        let me = self.clone();
        blocking(move || {
            if me
                .catalog
                .revoke_key(&key_id, scope.as_ref().map(TenantCtx::tenant))?
            {
                Ok(())
            } else {
                Err(UserError::NotFound("key").into())
            }
        })
        .await
    }

    /// Replace a key by a new secret with the same role and name; the old one stops working.
    pub async fn rotate_key(
        self: &Arc<Self>,
        scope: Option<TenantCtx>,
        key_id: String,
    ) -> Result<CreatedKey> {
        let me = self.clone();
        blocking(move || {
            let k = keys::generate();
            let tenant = scope.as_ref().map(TenantCtx::tenant);
            match me.catalog.rotate_key(&key_id, tenant, &k.key_id, &k.hash)? {
                Some(key) => Ok(CreatedKey {
                    key,
                    token: k.token,
                }),
                None => Err(UserError::NotFound("key").into()),
            }
        })
        .await
    }

    pub async fn list_tenants(self: &Arc<Self>) -> Result<Vec<(TenantId, i64, u64)>> {
        let me = self.clone();
        blocking(move || me.catalog.list_tenants()).await
    }

    /// Remove a tenant and all its data: catalog rows, keys, vectors, lexical index, uploads.
    pub async fn delete_tenant(self: &Arc<Self>, tenant: TenantId) -> Result<()> {
        let me = self.clone();
        blocking(move || {
            if !me.catalog.tenant_exists(&tenant)? {
                return Err(UserError::NotFound("tenant").into());
            }
            for job in me.catalog.unfinished_jobs()? {
                if job.tenant == tenant {
                    let _ = std::fs::remove_file(me.legacy_blobs.join(&job.id));
                }
            }
            // Its rows go first, its queued jobs and uploads with them, and a record that its
            // legs must be emptied: no node starts a job of it after this, and the removal
            // is finished by some node even if this one dies or gives up waiting.
            me.catalog.delete_tenant(&tenant)?;
            me.governor.forget(&tenant);
            if let Err(e) = me.finish_drop(&tenant, me.gate_wait()) {
                tracing::warn!(%tenant, error = %e, "tenant data removal continues in the background");
            }
            Ok(())
        })
        .await
    }

    /// Empty both legs of a deleted tenant once no job of it runs on any node (they hold its
    /// gate; their commits find no tenant and record nothing), waiting up to `wait`.
    pub(crate) fn finish_drop(&self, tenant: &TenantId, wait: Duration) -> Result<()> {
        let _gate = self.catalog.tenant_gate(tenant, true, wait)?;
        self.vectors.drop_tenant(tenant)?;
        self.lexical.drop_tenant(tenant)?;
        self.vectors.flush();
        self.catalog.drop_done(tenant)
    }

    // ---- limits and usage: delegated to the governor ----

    /// The tenant's limits in force (configured defaults under its overrides).
    pub async fn limits(self: &Arc<Self>, tenant: &TenantId) -> Result<Limits> {
        if let Some(l) = self.governor.cached_limits(tenant) {
            return Ok(l);
        }
        let (me, t) = (self.clone(), tenant.clone());
        blocking(move || me.governor.load_limits(&t)).await
    }

    /// (overrides, limits in force) of a tenant.
    pub async fn tenant_limits(
        self: &Arc<Self>,
        tenant: TenantId,
    ) -> Result<(TenantLimits, Limits)> {
        let me = self.clone();
        blocking(move || me.governor.tenant_limits(&tenant)).await
    }

    /// Replace a tenant's overrides (admin).
    pub async fn put_tenant_limits(
        self: &Arc<Self>,
        tenant: TenantId,
        over: TenantLimits,
    ) -> Result<Limits> {
        let me = self.clone();
        blocking(move || me.governor.put_tenant_limits(&tenant, &over)).await
    }

    /// Take a token from the tenant's bucket for `class`, or refuse with when to retry.
    pub async fn admit(self: &Arc<Self>, ctx: &TenantCtx, class: Class) -> Result<()> {
        let limits = self.limits(ctx.tenant()).await?;
        self.governor.admit(ctx, class, &limits)
    }

    /// What the tenant stores now: (documents, bytes, chunks).
    pub async fn stored(self: &Arc<Self>, tenant: TenantId) -> Result<(u64, u64, u64)> {
        let me = self.clone();
        blocking(move || me.catalog.stored_totals(&tenant)).await
    }

    /// Usage by day (`from..=to`, `YYYY-MM-DD`) and what the tenant stores now.
    pub async fn usage(
        self: &Arc<Self>,
        tenant: TenantId,
        from: String,
        to: String,
    ) -> Result<UsageReport> {
        let me = self.clone();
        blocking(move || me.governor.usage(&tenant, &from, &to)).await
    }
}
