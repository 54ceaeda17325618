//! Identity and access: the generated role matrix (every endpoint x every role x own/foreign
//! tenant), key listing, rotation and revocation, and JWT bearer tokens with their negative cases.
use axum::http::StatusCode;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use crate::common::*;

#[derive(Clone, Copy, Debug, PartialEq, PartialOrd)]
enum Role {
    Reader,
    Writer,
    TenantAdmin,
}

#[derive(Clone, Copy, Debug)]
enum Who {
    Nobody,
    Admin,
    Own(Role),
    Foreign(Role),
}

#[derive(Clone, Copy, Debug)]
enum Need {
    Admin,
    /// A tenant role; `resource` endpoints name one of tenant a's objects in the path, so a
    /// foreign credential gets 404 there, and acts on its own tenant elsewhere.
    Tenant {
        min: Role,
        resource: bool,
    },
    /// `/v1/tenants/a/...`: the admin or a's tenant_admin.
    Manager,
    /// `/v1/keys/{id}`: the admin or the key's tenant's tenant_admin.
    KeyManager,
    /// Any valid credential (`/v1/whoami`).
    Anyone,
}

/// A fresh object of tenant a made for each call, so destructive calls do not disturb others.
#[derive(Clone, Copy, Debug)]
enum Fresh {
    No,
    Tenant,
    KeyOfA,
    DocOfA,
    ThreadOfA,
}

struct Endpoint {
    method: &'static str,
    path: &'static str,
    body: Option<fn() -> Value>,
    fresh: Fresh,
    need: Need,
}

const DOC_A: &str = "doc-a";
const MARK_A: &str = "zebracorn";

fn endpoints() -> Vec<Endpoint> {
    use Need::*;
    let ep = |method, path, body, fresh, need| Endpoint {
        method,
        path,
        body,
        fresh,
        need,
    };
    let role = |min, resource| Tenant { min, resource };
    vec![
        ep(
            "POST",
            "/v1/tenants",
            Some(|| json!({"id": format!("t{}", uuid::Uuid::new_v4().simple())})),
            Fresh::No,
            Admin,
        ),
        ep("GET", "/v1/tenants", None, Fresh::No, Admin),
        ep("GET", "/v1/whoami", None, Fresh::No, Anyone),
        ep("DELETE", "/v1/tenants/{fresh}", None, Fresh::Tenant, Admin),
        ep(
            "POST",
            "/v1/tenants/a/keys",
            Some(|| json!({"role": "reader"})),
            Fresh::No,
            Manager,
        ),
        ep("GET", "/v1/tenants/a/keys", None, Fresh::No, Manager),
        ep("GET", "/v1/tenants/a/config", None, Fresh::No, Manager),
        ep(
            "PUT",
            "/v1/tenants/a/config",
            Some(|| json!({"default_generator": "extractive"})),
            Fresh::No,
            Manager,
        ),
        ep("GET", "/v1/tenants/a/limits", None, Fresh::No, Manager),
        ep(
            "PUT",
            "/v1/tenants/a/limits",
            Some(|| json!({})),
            Fresh::No,
            Admin,
        ),
        ep("GET", "/v1/tenants/a/usage", None, Fresh::No, Admin),
        ep(
            "DELETE",
            "/v1/keys/{fresh}",
            None,
            Fresh::KeyOfA,
            KeyManager,
        ),
        ep(
            "POST",
            "/v1/keys/{fresh}/rotate",
            None,
            Fresh::KeyOfA,
            KeyManager,
        ),
        ep(
            "POST",
            "/v1/documents?wait=true",
            Some(|| json!({"text": "Writers may add short notes."})),
            Fresh::No,
            role(Role::Writer, false),
        ),
        ep(
            "GET",
            "/v1/documents",
            None,
            Fresh::No,
            role(Role::Reader, false),
        ),
        ep(
            "GET",
            "/v1/documents/doc-a",
            None,
            Fresh::No,
            role(Role::Reader, true),
        ),
        ep(
            "GET",
            "/v1/documents/doc-a/chunks",
            None,
            Fresh::No,
            role(Role::Reader, true),
        ),
        ep(
            "DELETE",
            "/v1/documents/{fresh}",
            None,
            Fresh::DocOfA,
            role(Role::Writer, true),
        ),
        ep(
            "POST",
            "/v1/query",
            Some(|| json!({"query": MARK_A})),
            Fresh::No,
            role(Role::Reader, false),
        ),
        ep(
            "POST",
            "/v1/answer",
            Some(|| json!({"question": "What is a zebracorn?"})),
            Fresh::No,
            role(Role::Reader, false),
        ),
        ep(
            "GET",
            "/v1/threads/{fresh}",
            None,
            Fresh::ThreadOfA,
            role(Role::Reader, true),
        ),
        ep(
            "DELETE",
            "/v1/threads/{fresh}",
            None,
            Fresh::ThreadOfA,
            role(Role::Reader, true),
        ),
        ep(
            "GET",
            "/v1/usage",
            None,
            Fresh::No,
            role(Role::TenantAdmin, false),
        ),
        ep(
            "GET",
            "/v1/export",
            None,
            Fresh::No,
            role(Role::TenantAdmin, false),
        ),
        ep("GET", "/metrics", None, Fresh::No, Admin),
        ep("GET", "/v1/queue", None, Fresh::No, Admin),
        ep("GET", "/v1/stats", None, Fresh::No, Admin),
        ep("GET", "/v1/reports", None, Fresh::No, Admin),
        ep(
            "GET",
            "/v1/jobs",
            None,
            Fresh::No,
            role(Role::Reader, false),
        ),
        ep(
            "GET",
            "/v1/threads",
            None,
            Fresh::No,
            role(Role::Reader, false),
        ),
    ]
}

/// `None` = allowed (any 2xx); otherwise the refusal status.
fn expected(need: Need, who: Who) -> Option<StatusCode> {
    use StatusCode as S;
    match (need, who) {
        (_, Who::Nobody) => Some(S::UNAUTHORIZED),
        (Need::Admin, Who::Admin) => None,
        (Need::Admin, _) => Some(S::FORBIDDEN),
        (Need::Tenant { .. }, Who::Admin) => Some(S::FORBIDDEN),
        (Need::Tenant { min, .. }, Who::Own(r) | Who::Foreign(r)) if r < min => Some(S::FORBIDDEN),
        (Need::Tenant { resource: true, .. }, Who::Foreign(_)) => Some(S::NOT_FOUND),
        (Need::Tenant { .. }, _) => None,
        (Need::Manager, Who::Admin | Who::Own(Role::TenantAdmin)) => None,
        (Need::Manager, Who::Own(_)) => Some(S::FORBIDDEN),
        // Whether tenant a exists is not revealed to other tenants.
        (Need::Manager, Who::Foreign(_)) => Some(S::NOT_FOUND),
        (Need::KeyManager, Who::Admin | Who::Own(Role::TenantAdmin)) => None,
        (Need::KeyManager, Who::Foreign(Role::TenantAdmin)) => Some(S::NOT_FOUND),
        (Need::KeyManager, _) => Some(S::FORBIDDEN),
        (Need::Anyone, _) => None,
    }
}

async fn key(app: &TestApp, tenant: &str, role: &str) -> (String, String) {
    let r = app
        .call(
            "POST",
            &format!("/v1/tenants/{tenant}/keys"),
            ADMIN,
            Some(json!({"role": role, "name": format!("{role} key")})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body["role"], role);
    (
        r.body["api_key"].as_str().unwrap().to_string(),
        r.body["key_id"].as_str().unwrap().to_string(),
    )
}

#[tokio::test]
async fn role_matrix_every_endpoint_every_role_own_and_foreign() {
    let app = app().await;
    let a_admin = app.tenant("a").await;
    let b_admin = app.tenant("b").await;
    let r = app
        .put_text(
            &a_admin,
            DOC_A,
            &format!("The {MARK_A} lives only in tenant a's notes."),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let mut creds: Vec<(Who, String)> = vec![
        (Who::Nobody, "not-a-key".into()),
        (Who::Admin, ADMIN.into()),
    ];
    for (role, name) in [(Role::Reader, "reader"), (Role::Writer, "writer")] {
        creds.push((Who::Own(role), key(&app, "a", name).await.0));
        creds.push((Who::Foreign(role), key(&app, "b", name).await.0));
    }
    creds.push((Who::Own(Role::TenantAdmin), a_admin.clone()));
    creds.push((Who::Foreign(Role::TenantAdmin), b_admin));

    let mut checked = 0;
    for ep in endpoints() {
        for (who, cred) in &creds {
            let fresh = match ep.fresh {
                Fresh::No => String::new(),
                Fresh::Tenant => {
                    let id = format!("z{}", uuid::Uuid::new_v4().simple());
                    app.tenant(&id).await;
                    id
                }
                Fresh::KeyOfA => key(&app, "a", "reader").await.1,
                Fresh::DocOfA => {
                    let id = format!("d{}", uuid::Uuid::new_v4().simple());
                    assert_eq!(
                        app.put_text(&a_admin, &id, "A throwaway note.")
                            .await
                            .status,
                        StatusCode::OK
                    );
                    id
                }
                Fresh::ThreadOfA => {
                    // A thread belongs to the credential that started it: tenant a's own
                    // credentials start theirs; everyone else meets a thread of a's admin.
                    let owner = match who {
                        Who::Own(_) => cred,
                        _ => &a_admin,
                    };
                    let id = format!("th{}", uuid::Uuid::new_v4().simple());
                    let r = app
                        .call("POST", "/v1/answer", owner, Some(json!({"question": "Where does the zebracorn live?", "thread_id": id})))
                        .await;
                    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
                    id
                }
            };
            let path = ep.path.replace("{fresh}", &fresh);
            let r = app.call(ep.method, &path, cred, ep.body.map(|b| b())).await;
            let want = expected(ep.need, *who);
            match want {
                None => assert!(
                    r.status.is_success(),
                    "{} {path} as {who:?}: expected success, got {} {:?}",
                    ep.method,
                    r.status,
                    r.body
                ),
                Some(s) => {
                    assert_eq!(r.status, s, "{} {path} as {who:?}: {:?}", ep.method, r.body);
                    let code = r.body["error"]["code"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string();
                    assert!(
                        !code.is_empty(),
                        "{} {path} as {who:?}: refusal without a code",
                        ep.method
                    );
                }
            }
            // Whatever a foreign credential may do, it never shows tenant a's text.
            if matches!(who, Who::Foreign(_)) {
                let body = r.body.to_string();
                // Listings carry ids and questions rather than text: none of tenant a's (its
                // document's id, its threads' question; requests may echo their own words).
                for marker in [
                    "lives only in tenant a",
                    DOC_A,
                    "Where does the zebracorn live?",
                ] {
                    assert!(
                        !body.contains(marker),
                        "{} {path} as {who:?} leaked tenant a ({marker}): {body}",
                        ep.method
                    );
                }
            }
            checked += 1;
        }
    }
    assert_eq!(checked, endpoints().len() * creds.len());
    // Tenant a's document is still there after the whole matrix (foreign deletes did nothing).
    let r = app.call("GET", "/v1/documents/doc-a", &a_admin, None).await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn keys_are_listed_without_secrets_rotated_and_revoked() {
    let app = app().await;
    let admin_a = app.tenant("a").await;
    // A tenant_admin makes keys for its own tenant.
    let r = app
        .call(
            "POST",
            "/v1/tenants/a/keys",
            &admin_a,
            Some(json!({"role": "writer", "name": "ci"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let writer = r.body["api_key"].as_str().unwrap().to_string();
    let writer_id = r.body["key_id"].as_str().unwrap().to_string();
    // Default role is the least one.
    let r = app.call("POST", "/v1/tenants/a/keys", &admin_a, None).await;
    assert_eq!(r.body["role"], "reader");

    let r = app.call("GET", "/v1/tenants/a/keys", &admin_a, None).await;
    assert_eq!(r.status, StatusCode::OK);
    let keys = r.body["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 3);
    let listed = r.body.to_string();
    assert!(
        !listed.contains(writer.rsplit('_').next().unwrap()),
        "a secret was listed"
    );
    let ci = keys
        .iter()
        .find(|k| k["key_id"] == writer_id.as_str())
        .unwrap();
    assert_eq!(ci["role"], "writer");
    assert_eq!(ci["name"], "ci");
    assert_eq!(ci["prefix"], format!("tny_{writer_id}_"));
    assert!(writer.starts_with(ci["prefix"].as_str().unwrap()));

    // Rotation: the new secret works at once, the old one fails on its next request.
    assert_eq!(
        app.put_text(&writer, "d1", "Rotation notes.").await.status,
        StatusCode::OK
    );
    let r = app
        .call(
            "POST",
            &format!("/v1/keys/{writer_id}/rotate"),
            &admin_a,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body["role"], "writer");
    let rotated = r.body["api_key"].as_str().unwrap().to_string();
    let rotated_id = r.body["key_id"].as_str().unwrap().to_string();
    assert_ne!(rotated_id, writer_id);
    let r = app.call("GET", "/v1/documents", &writer, None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.body["error"]["code"], "unauthorized");
    assert_eq!(
        app.call("GET", "/v1/documents", &rotated, None)
            .await
            .status,
        StatusCode::OK
    );

    // Revocation takes effect on the next request; another tenant cannot see or revoke it.
    let admin_b = app.tenant("b").await;
    let r = app
        .call("DELETE", &format!("/v1/keys/{rotated_id}"), &admin_b, None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(
        app.call("GET", "/v1/documents", &rotated, None)
            .await
            .status,
        StatusCode::OK
    );
    let r = app
        .call("DELETE", &format!("/v1/keys/{rotated_id}"), &admin_a, None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(
        app.call("GET", "/v1/documents", &rotated, None)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
}

// ---- JWT ----

const HS_SECRET: &str = "test-hs256-secret-0123456789abcdef-0123456789";
const AUD: &str = "tenantry-test";
const ISS: &str = "https://idp.example.test";

async fn jwt_app() -> TestApp {
    let jwks = root().join("fixtures/jwt/jwks.json");
    app_with(&[
        &format!("jwt.hs256_secret={HS_SECRET}"),
        &format!("jwt.jwks_file={}", jwks.display()),
        &format!("jwt.audience={AUD}"),
        &format!("jwt.issuer={ISS}"),
        "jwt.leeway_secs=5",
    ])
    .await
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn claims(tenant: &str, role: &str) -> Value {
    json!({"tenant_id": tenant, "role": role, "aud": AUD, "iss": ISS, "exp": now() + 600, "nbf": now() - 10, "iat": now()})
}

fn pem(name: &str) -> Vec<u8> {
    std::fs::read(root().join("fixtures/jwt").join(name)).unwrap()
}

fn hs(c: &Value) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        c,
        &EncodingKey::from_secret(HS_SECRET.as_bytes()),
    )
    .unwrap()
}

fn signed(alg: Algorithm, kid: Option<&str>, key_file: &str, c: &Value) -> String {
    let mut h = Header::new(alg);
    h.kid = kid.map(str::to_string);
    let key = match alg {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(&pem(key_file)).unwrap(),
        Algorithm::ES256 => EncodingKey::from_ec_pem(&pem(key_file)).unwrap(),
        Algorithm::HS256 => EncodingKey::from_secret(&pem(key_file)),
        other => panic!("{other:?}"),
    };
    encode(&h, c, &key).unwrap()
}

fn b64(v: &Value) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

#[tokio::test]
async fn jwt_tokens_grant_their_tenant_and_role() {
    let app = jwt_app().await;
    let a = app.tenant("a").await;
    app.tenant("b").await;
    assert_eq!(
        app.put_text(&a, "secret-a", "Tenant a keeps the zebracorn ledger.")
            .await
            .status,
        StatusCode::OK
    );

    for token in [
        hs(&claims("a", "reader")),
        signed(
            Algorithm::RS256,
            Some("rsa-1"),
            "rsa_private.pem",
            &claims("a", "reader"),
        ),
        signed(
            Algorithm::ES256,
            Some("ec-1"),
            "ec_private.pem",
            &claims("a", "reader"),
        ),
    ] {
        let r = app
            .call("GET", "/v1/documents/secret-a", &token, None)
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        // A reader token cannot write.
        let r = app.put_text(&token, "x", "nope").await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
    }
    let writer = hs(&claims("a", "writer"));
    assert_eq!(
        app.put_text(&writer, "w", "Written with a token.")
            .await
            .status,
        StatusCode::OK
    );
    // A token for b sees nothing of a.
    let b_token = signed(
        Algorithm::RS256,
        Some("rsa-1"),
        "rsa_private.pem",
        &claims("b", "tenant_admin"),
    );
    assert_eq!(
        app.call("GET", "/v1/documents/secret-a", &b_token, None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.call("GET", "/v1/tenants/a/keys", &b_token, None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let r = app.call("GET", "/v1/documents", &b_token, None).await;
    assert_eq!(r.body["documents"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn jwt_negative_cases_are_refused_with_401_and_a_code() {
    let app = jwt_app().await;
    app.tenant("a").await;
    let good = claims("a", "tenant_admin");
    let with = |k: &str, v: Value| {
        let mut c = good.clone();
        c[k] = v;
        c
    };
    let without = |k: &str| {
        let mut c = good.clone();
        c.as_object_mut().unwrap().remove(k);
        c
    };
    let rs = |c: &Value| signed(Algorithm::RS256, Some("rsa-1"), "rsa_private.pem", c);
    // Tampered: a valid reader token whose payload is swapped for tenant_admin.
    let reader = rs(&claims("a", "reader"));
    let parts: Vec<&str> = reader.split('.').collect();
    let tampered = format!("{}.{}.{}", parts[0], b64(&good), parts[2]);
    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&good)
    );
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "expired",
            hs(&with("exp", json!(now() - 120))),
            "token_expired",
        ),
        (
            "not yet valid",
            hs(&with("nbf", json!(now() + 120))),
            "token_not_yet_valid",
        ),
        (
            "wrong audience",
            hs(&with("aud", json!("someone-else"))),
            "invalid_token",
        ),
        (
            "wrong issuer",
            hs(&with("iss", json!("https://evil.test"))),
            "invalid_token",
        ),
        ("no exp", hs(&without("exp")), "invalid_token"),
        ("no iat", hs(&without("iat")), "invalid_token"),
        (
            "iat in the future",
            hs(&with("iat", json!(now() + 3600))),
            "invalid_token",
        ),
        // Issued before tenant a existed: for an earlier tenant of the same id.
        (
            "issued before the tenant was created",
            hs(&with("iat", json!(now() - 3600))),
            "invalid_token",
        ),
        ("alg none", none, "invalid_token"),
        // HS/RS confusion: HS256 "signed" with the RSA public key that verifies RS256 tokens.
        (
            "HS256 with the RSA public key",
            signed(Algorithm::HS256, Some("rsa-1"), "rsa_public.pem", &good),
            "invalid_token",
        ),
        (
            "RS256 with a key type mismatch",
            signed(Algorithm::RS256, Some("ec-1"), "rsa_private.pem", &good),
            "invalid_token",
        ),
        (
            "signed by a key not in the JWKS",
            signed(
                Algorithm::RS256,
                Some("rsa-1"),
                "rsa_other_private.pem",
                &good,
            ),
            "invalid_token",
        ),
        ("tampered payload", tampered, "invalid_token"),
        (
            "wrong HS secret",
            encode(
                &Header::new(Algorithm::HS256),
                &good,
                &EncodingKey::from_secret(b"another-secret-another-secret-0000"),
            )
            .unwrap(),
            "invalid_token",
        ),
        (
            "unknown tenant",
            hs(&with("tenant_id", json!("ghost"))),
            "invalid_token",
        ),
        (
            "admin role",
            hs(&with("role", json!("admin"))),
            "invalid_token",
        ),
        ("garbage", "a.b.c".into(), "invalid_token"),
    ];
    for (what, token, code) in cases {
        let r = app.call("GET", "/v1/documents", &token, None).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{what}: {:?}", r.body);
        assert_eq!(r.body["error"]["code"], code, "{what}");
        assert_eq!(r.headers["www-authenticate"], "Bearer", "{what}");
    }
    // The good token itself passes, so the refusals above are about what each case changed.
    assert_eq!(
        app.call("GET", "/v1/documents", &rs(&good), None)
            .await
            .status,
        StatusCode::OK
    );
    // Without JWT configured, tokens are refused with a code too.
    let plain = crate::common::app().await;
    let r = plain.call("GET", "/v1/documents", &rs(&good), None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.body["error"]["code"], "invalid_token");
}
