//! Bearer-token checks at the HTTP level: every failure is a 401 with `WWW-Authenticate`, the
//! error JSON, and no change to the data.

use std::path::PathBuf;

use base64::Engine;
use chatstore_tests::{
    Answer, Backend, TestApp, dual_backend_tests, with_app, with_app_configured,
};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use secrecy::SecretString;
use serde_json::json;

const SECRET: &str = "a-test-secret-that-is-long-enough-for-hs256";

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../crates/api/tests/fixtures").join(name)
}

fn read_fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).expect("fixture")
}

fn claims(sub: &str) -> serde_json::Value {
    let now = chrono::Utc::now().timestamp();
    json!({ "sub": sub, "iat": now, "exp": now + 600, "iss": "https://issuer.test/", "aud": "chatstore" })
}

fn hs256(claims: &serde_json::Value, secret: &[u8]) -> String {
    encode(&Header::new(Algorithm::HS256), claims, &EncodingKey::from_secret(secret)).unwrap()
}

fn signed(algorithm: Algorithm, kid: &str, claims: &serde_json::Value) -> String {
    let key = match algorithm {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(&read_fixture("rsa_private.pem")).unwrap(),
        _ => EncodingKey::from_ec_pem(&read_fixture("ec_private.pem")).unwrap(),
    };
    let mut header = Header::new(algorithm);
    header.kid = Some(kid.to_owned());
    encode(&header, claims, &key).unwrap()
}

fn unsigned(claims: &serde_json::Value) -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    format!(
        "{}.{}.",
        b64.encode(br#"{"alg":"none","typ":"JWT"}"#),
        b64.encode(claims.to_string().as_bytes())
    )
}

/// A server that accepts HS256 with `SECRET` and RS256/ES256 from the fixture JWKS, and
/// requires the issuer and audience.
fn strict(settings: &mut chatstore::settings::Settings) {
    settings.auth.jwt_secret = Some(SecretString::from(SECRET));
    settings.auth.jwks_path = Some(fixture("jwks.json"));
    settings.auth.issuer = Some("https://issuer.test/".into());
    settings.auth.audience = Some("chatstore".into());
}

async fn send_with(app: &TestApp, authorization: Option<&str>) -> Answer {
    let mut request = app
        .client
        .post(app.url("/sessions/guarded/items"))
        .header("content-type", "application/json")
        .body(r#"{"items":[{"a":1}]}"#);
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    Answer::read(request.send().await.unwrap()).await
}

async fn every_bad_token_is_a_401_that_changes_nothing(backend: Backend) {
    with_app_configured(backend, strict, async |app| {
        let now = chrono::Utc::now().timestamp();
        let mut expired = claims("alice");
        expired["exp"] = json!(now - 3600);
        let mut not_yet = claims("alice");
        not_yet["nbf"] = json!(now + 3600);
        let mut wrong_issuer = claims("alice");
        wrong_issuer["iss"] = json!("https://evil.test/");
        let mut wrong_audience = claims("alice");
        wrong_audience["aud"] = json!("someone-else");
        let mut no_sub = claims("alice");
        no_sub.as_object_mut().unwrap().remove("sub");
        let mut no_exp = claims("alice");
        no_exp.as_object_mut().unwrap().remove("exp");
        // Algorithm confusion: an HS256 token whose "secret" is the RSA public key.
        let confused = hs256(&claims("alice"), &read_fixture("rsa_public.pem"));

        let cases: Vec<(&str, Option<String>)> = vec![
            ("no header", None),
            ("another scheme", Some("Basic YWxpY2U6cGFzcw==".into())),
            ("empty bearer", Some("Bearer ".into())),
            ("garbage", Some("Bearer not.a.token".into())),
            (
                "wrong secret",
                Some(format!(
                    "Bearer {}",
                    hs256(&claims("alice"), b"another-secret-entirely-and-long")
                )),
            ),
            ("expired", Some(format!("Bearer {}", hs256(&expired, SECRET.as_bytes())))),
            ("not yet valid", Some(format!("Bearer {}", hs256(&not_yet, SECRET.as_bytes())))),
            ("wrong issuer", Some(format!("Bearer {}", hs256(&wrong_issuer, SECRET.as_bytes())))),
            (
                "wrong audience",
                Some(format!("Bearer {}", hs256(&wrong_audience, SECRET.as_bytes()))),
            ),
            ("no sub", Some(format!("Bearer {}", hs256(&no_sub, SECRET.as_bytes())))),
            ("no exp", Some(format!("Bearer {}", hs256(&no_exp, SECRET.as_bytes())))),
            ("alg none", Some(format!("Bearer {}", unsigned(&claims("alice"))))),
            ("algorithm confusion", Some(format!("Bearer {confused}"))),
            (
                "unknown kid",
                Some(format!("Bearer {}", signed(Algorithm::RS256, "nope", &claims("alice")))),
            ),
            (
                "RSA token under the EC key id",
                Some(format!("Bearer {}", signed(Algorithm::RS256, "ec-1", &claims("alice")))),
            ),
        ];
        for (case, authorization) in cases {
            let answer = send_with(app, authorization.as_deref()).await;
            assert_eq!(answer.status, 401, "{case}: {}", answer.text);
            answer.assert_error(401, "unauthorized");
            assert_eq!(answer.header("www-authenticate"), Some("Bearer"), "{case}");
            assert!(!answer.text.contains(SECRET), "{case}: the secret leaked");
        }
        // Nothing was stored by any of them, for any user.
        assert!(app.db.sessions().latest_items("alice", "guarded", 10).await.unwrap().is_empty());
        assert_eq!(app.db.sessions().item_count("alice", "guarded").await.unwrap(), 0);
    })
    .await;
}

async fn hs256_rs256_and_es256_tokens_are_accepted(backend: Backend) {
    with_app_configured(backend, strict, async |app| {
        let tokens = [
            ("hs", hs256(&claims("hs-user"), SECRET.as_bytes())),
            ("rs", signed(Algorithm::RS256, "rsa-1", &claims("rs-user"))),
            ("es", signed(Algorithm::ES256, "ec-1", &claims("es-user"))),
        ];
        for (name, token) in tokens {
            let answer = send_with(app, Some(&format!("Bearer {token}"))).await;
            assert_eq!(answer.status, 200, "{name}: {}", answer.text);
            let user = format!("{name}-user");
            assert_eq!(
                app.db.sessions().latest_items(&user, "guarded", 10).await.unwrap(),
                ["{\"a\":1}"],
                "{name}: the item belongs to the token's sub"
            );
        }
    })
    .await;
}

/// The development setup: `chatstore token`'s tokens work, and the operations routes need none.
async fn development_tokens_work_and_operations_routes_need_none(backend: Backend) {
    with_app(backend, async |app| {
        let answer = send_with(app, Some(&format!("Bearer {}", app.token("dev")))).await;
        assert_eq!(answer.status, 200, "{}", answer.text);
        for path in ["/healthz", "/readyz", "/metrics", "/openapi.json", "/docs/"] {
            let status = app.client.get(app.url(path)).send().await.unwrap().status();
            assert_eq!(status, 200, "{path}");
        }
        let answer =
            Answer::read(app.client.get(app.url("/sessions/x/items")).send().await.unwrap()).await;
        answer.assert_error(401, "unauthorized");
    })
    .await;
}

dual_backend_tests!(
    every_bad_token_is_a_401_that_changes_nothing,
    hs256_rs256_and_es256_tokens_are_accepted,
    development_tokens_work_and_operations_routes_need_none,
);
