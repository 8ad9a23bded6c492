//! Bearer tokens: verifying the JWTs clients send, and minting development tokens.
//!
//! The key decides the algorithm, never the token: HS256 is verified only with the shared
//! secret, RS256 only with the RSA keys of the JWKS file, ES256 only with its EC P-256 keys.
//! Every other `alg`, `none` included, is rejected, so a token cannot pick a weaker check (or
//! get a public key used as an HMAC secret).

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::{Context, bail};
use jsonwebtoken::errors::{Error as JwtError, ErrorKind};
use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::ApiError;
use crate::settings::AuthSettings;

/// How many verified tokens are remembered; past that the memory starts over.
const REMEMBERED_TOKENS: usize = 4096;

/// Checks bearer tokens against the configured secret and JWKS keys.
#[derive(Clone)]
pub struct TokenVerifier {
    inner: Arc<Keys>,
}

struct Keys {
    /// The HS256 key; `None` when no shared secret is configured.
    secret: Option<DecodingKey>,
    /// The usable keys of the JWKS file.
    jwks: Vec<JwksKey>,
    /// The claim checks every token gets; `algorithms` is filled in per token.
    validation: Validation,
    /// Tokens that passed every check, by their exact text. A client sends the same token
    /// on every request, and checking it (base64, two JSON documents, an HMAC or signature)
    /// cost more CPU than the rest of a session read. The keys and claim rules are fixed for
    /// the process's life, so an identical token stays valid until its `exp`, which is
    /// checked again on every use.
    verified: Mutex<HashMap<String, Verified>>,
}

/// What a verified token carried.
#[derive(Clone)]
struct Verified {
    user: String,
    /// The `exp` claim, in seconds since the epoch.
    expires: u64,
}

struct JwksKey {
    kid: Option<String>,
    /// The one algorithm this key verifies: RS256 for RSA keys, ES256 for P-256 keys.
    alg: Algorithm,
    key: DecodingKey,
}

impl TokenVerifier {
    /// Builds from settings: HS256 with the shared secret if set; RS256/ES256 with every usable
    /// key of the JWKS file if set (read once, here). Errors are startup errors.
    pub fn from_settings(settings: &AuthSettings) -> anyhow::Result<Self> {
        let secret = settings.secret().map(|secret| DecodingKey::from_secret(secret.as_bytes()));
        let jwks = match settings.jwks_path() {
            Some(path) => load_jwks(path)?,
            None => Vec::new(),
        };
        if secret.is_none() && jwks.is_empty() {
            bail!("no way to verify tokens: set auth.jwt_secret or auth.jwks_path");
        }

        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = settings.leeway_secs;
        validation.validate_nbf = true;
        let mut required = vec!["exp"];
        if let Some(issuer) = settings.issuer() {
            validation.set_issuer(&[issuer]);
            required.push("iss");
        }
        // jsonwebtoken rejects every token carrying an `aud` when no audience is expected; the
        // API contract checks `aud` only when one is configured.
        validation.validate_aud = false;
        if let Some(audience) = settings.audience() {
            validation.set_audience(&[audience]);
            validation.validate_aud = true;
            required.push("aud");
        }
        validation.set_required_spec_claims(&required);

        let verified = Mutex::new(HashMap::new());
        Ok(Self { inner: Arc::new(Keys { secret, jwks, validation, verified }) })
    }

    /// Verifies a raw token (without "Bearer ") and returns its user id, the `sub` claim.
    pub fn verify(&self, token: &str) -> Result<String, ApiError> {
        let now = jsonwebtoken::get_current_timestamp();
        if let Some(user) = self.remembered(token, now) {
            return Ok(user);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|err| rejection(&err))?;
        let claims = match header.alg {
            Algorithm::HS256 => {
                let key = self.inner.secret.as_ref().ok_or_else(algorithm_not_accepted)?;
                self.decode(token, key, Algorithm::HS256).map_err(|err| rejection(&err))?
            }
            Algorithm::RS256 | Algorithm::ES256 => self.decode_with_jwks(token, &header)?,
            _ => return Err(algorithm_not_accepted()),
        };
        let expires = claims.get("exp").and_then(Value::as_u64);
        let user = subject(claims)?;
        if let Some(expires) = expires {
            self.remember(token, &user, expires);
        }
        Ok(user)
    }

    /// The user of `token` if it was verified before and has not expired since (with the
    /// same leeway the full check allows).
    fn remembered(&self, token: &str, now: u64) -> Option<String> {
        let verified = self.inner.verified.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let entry = verified.get(token)?;
        let still_valid = now <= entry.expires.saturating_add(self.inner.validation.leeway);
        still_valid.then(|| entry.user.clone())
    }

    fn remember(&self, token: &str, user: &str, expires: u64) {
        let mut verified =
            self.inner.verified.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if verified.len() >= REMEMBERED_TOKENS {
            // Simpler than evicting one by one, and rare: it takes that many distinct live
            // tokens between two clears.
            verified.clear();
        }
        verified.insert(token.to_owned(), Verified { user: user.to_owned(), expires });
    }

    /// Verifies an `Authorization` header value, `Bearer <token>` (the scheme in any case),
    /// and returns the token's user id.
    pub fn verify_header(&self, header_value: Option<&str>) -> Result<String, ApiError> {
        let value = header_value.map(str::trim).unwrap_or_default();
        if value.is_empty() {
            return Err(unauthorized("missing bearer token"));
        }
        let (scheme, token) = value.split_once(char::is_whitespace).unwrap_or((value, ""));
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(unauthorized("authorization scheme must be Bearer"));
        }
        let token = token.trim();
        if token.is_empty() {
            return Err(unauthorized("missing bearer token"));
        }
        self.verify(token)
    }

    fn decode_with_jwks(
        &self,
        token: &str,
        header: &Header,
    ) -> Result<Map<String, Value>, ApiError> {
        if let Some(kid) = &header.kid {
            let key = self
                .inner
                .jwks
                .iter()
                .find(|key| key.kid.as_deref() == Some(kid.as_str()))
                .ok_or_else(|| unauthorized("unknown token key id"))?;
            if key.alg != header.alg {
                return Err(algorithm_not_accepted());
            }
            return self.decode(token, &key.key, key.alg).map_err(|err| rejection(&err));
        }

        let mut outcome = None;
        for key in self.inner.jwks.iter().filter(|key| key.alg == header.alg) {
            let result = self.decode(token, &key.key, key.alg);
            // A signature mismatch only means "not this key"; any other answer is final.
            let other_key =
                matches!(&result, Err(err) if *err.kind() == ErrorKind::InvalidSignature);
            outcome = Some(result);
            if !other_key {
                break;
            }
        }
        match outcome {
            Some(result) => result.map_err(|err| rejection(&err)),
            None => Err(algorithm_not_accepted()),
        }
    }

    fn decode(
        &self,
        token: &str,
        key: &DecodingKey,
        alg: Algorithm,
    ) -> Result<Map<String, Value>, JwtError> {
        let mut validation = self.inner.validation.clone();
        validation.algorithms = vec![alg];
        // Claims as a map so that a missing or non-string `sub` gets its own message below.
        jsonwebtoken::decode(token, key, &validation).map(|data| data.claims)
    }
}

impl fmt::Debug for TokenVerifier {
    // By hand so that key material can never end up in a log line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let jwks: Vec<_> =
            self.inner.jwks.iter().map(|key| (key.alg, key.kid.as_deref())).collect();
        f.debug_struct("TokenVerifier")
            .field("hs256", &self.inner.secret.is_some())
            .field("jwks", &jwks)
            .field("issuer", &self.inner.validation.iss)
            .field("audience", &self.inner.validation.aud)
            .field("leeway_secs", &self.inner.validation.leeway)
            .finish()
    }
}

/// Makes an HS256 token for `user` signed with the configured secret (`chatstore token`).
pub fn mint_token(settings: &AuthSettings, user: &str) -> anyhow::Result<String> {
    let Some(secret) = settings.secret() else {
        bail!(
            "cannot make a token: no auth.jwt_secret is configured (with a JWKS, tokens come \
             from its identity provider)"
        );
    };
    if user.is_empty() {
        bail!("cannot make a token for an empty user id");
    }
    let now = jsonwebtoken::get_current_timestamp();
    let claims = MintedClaims {
        sub: user,
        iat: now,
        exp: now.saturating_add(settings.token_ttl_secs),
        iss: settings.issuer(),
        aud: settings.audience(),
    };
    let key = EncodingKey::from_secret(secret.as_bytes());
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key).context("signing the token")
}

#[derive(Serialize)]
struct MintedClaims<'a> {
    sub: &'a str,
    iat: u64,
    exp: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<&'a str>,
}

fn load_jwks(path: &Path) -> anyhow::Result<Vec<JwksKey>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the JWKS file {}", path.display()))?;
    let set: JwkSet = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a JWKS document", path.display()))?;
    let mut keys = Vec::new();
    for jwk in &set.keys {
        let kid = jwk.common.key_id.as_deref();
        match usable_key(jwk).with_context(|| {
            format!("{}: invalid key {}", path.display(), kid.unwrap_or("without kid"))
        })? {
            Some(key) => keys.push(key),
            None => tracing::warn!(
                jwks = %path.display(),
                kid,
                "ignoring a JWKS key that is not an RS256 (RSA) or ES256 (EC P-256) signing key"
            ),
        }
    }
    if keys.is_empty() {
        bail!("{} has no RS256 (RSA) or ES256 (EC P-256) signing key", path.display());
    }
    Ok(keys)
}

/// The key as this service uses it, or `None` when it is not meant for RS256/ES256 signatures.
fn usable_key(jwk: &Jwk) -> anyhow::Result<Option<JwksKey>> {
    if jwk.common.public_key_use.as_ref().is_some_and(|usage| *usage != PublicKeyUse::Signature) {
        return Ok(None);
    }
    let alg = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(params) if params.curve == EllipticCurve::P256 => {
            Algorithm::ES256
        }
        _ => return Ok(None),
    };
    // A key its owner pinned to another algorithm (PS256 on an RSA key, say) must not verify
    // this one.
    if jwk.common.key_algorithm.is_some_and(|pinned| pinned != KeyAlgorithm::from(alg)) {
        return Ok(None);
    }
    let key = DecodingKey::from_jwk(jwk)?;
    if alg == Algorithm::ES256 {
        // Building a verifier checks that the point is on the curve: a bad key fails here, at
        // startup, rather than on every request.
        jsonwebtoken::crypto::verify("", b"", &key, alg)?;
    }
    Ok(Some(JwksKey { kid: jwk.common.key_id.clone(), alg, key }))
}

/// The user id: `sub` must be a non-empty string.
fn subject(mut claims: Map<String, Value>) -> Result<String, ApiError> {
    match claims.remove("sub") {
        Some(Value::String(sub)) if !sub.is_empty() => Ok(sub),
        Some(Value::String(_)) => Err(unauthorized("token has an empty sub claim")),
        _ => Err(unauthorized("token has no sub claim")),
    }
}

/// A client-safe message for a failed verification.
fn rejection(err: &JwtError) -> ApiError {
    let message = match err.kind() {
        ErrorKind::InvalidToken
        | ErrorKind::Base64(_)
        | ErrorKind::Json(_)
        | ErrorKind::Utf8(_) => "malformed token",
        ErrorKind::InvalidSignature => "invalid token signature",
        ErrorKind::ExpiredSignature => "token expired",
        ErrorKind::ImmatureSignature => "token not yet valid",
        ErrorKind::InvalidIssuer => "invalid token issuer",
        ErrorKind::InvalidAudience => "invalid token audience",
        ErrorKind::InvalidAlgorithm | ErrorKind::UnsupportedAlgorithm => {
            "token algorithm not accepted"
        }
        // The claim names come from jsonwebtoken's fixed list (exp, nbf, iss, aud, sub).
        ErrorKind::MissingRequiredClaim(claim) => {
            return unauthorized(format!("token has no {claim} claim"));
        }
        ErrorKind::InvalidClaimFormat(claim) => {
            return unauthorized(format!("token has an invalid {claim} claim"));
        }
        // Key problems that startup checks should have caught; worth a look, not a detail for
        // the client. jsonwebtoken's messages name the problem, never the key.
        _ => {
            tracing::warn!(error = %err, "unexpected token verification failure");
            "invalid token"
        }
    };
    unauthorized(message)
}

fn algorithm_not_accepted() -> ApiError {
    unauthorized("token algorithm not accepted")
}

fn unauthorized(message: impl Into<String>) -> ApiError {
    ApiError::Unauthorized(message.into())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::path::PathBuf;

    use jsonwebtoken::get_current_timestamp;
    use secrecy::SecretString;
    use serde_json::json;

    use super::*;

    const SECRET: &str = "test-secret-that-is-long-enough-for-hs256!";
    // Test-only keys made with `openssl genpkey` (RSA 2048, EC P-256 as PKCS#8); jwks.json holds
    // their public halves as "rsa-1" and "ec-1".
    const JWKS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/jwks.json");
    const RSA_PRIVATE: &str =
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/rsa_private.pem");
    const RSA_PUBLIC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/rsa_public.pem");
    const EC_PRIVATE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/ec_private.pem");

    fn settings(secret: Option<&str>, jwks: Option<&str>) -> AuthSettings {
        AuthSettings {
            jwt_secret: secret.map(SecretString::from),
            jwks_path: jwks.map(PathBuf::from),
            issuer: None,
            audience: None,
            leeway_secs: 30,
            token_ttl_secs: 3600,
        }
    }

    fn secret_only() -> TokenVerifier {
        TokenVerifier::from_settings(&settings(Some(SECRET), None)).unwrap()
    }

    fn jwks_only() -> TokenVerifier {
        TokenVerifier::from_settings(&settings(None, Some(JWKS))).unwrap()
    }

    fn secret_and_jwks() -> TokenVerifier {
        TokenVerifier::from_settings(&settings(Some(SECRET), Some(JWKS))).unwrap()
    }

    fn now() -> u64 {
        get_current_timestamp()
    }

    /// Valid claims for user "alice".
    fn claims() -> Value {
        json!({ "sub": "alice", "iat": now(), "exp": now() + 600 })
    }

    fn header(alg: Algorithm, kid: Option<&str>) -> Header {
        let mut header = Header::new(alg);
        header.kid = kid.map(str::to_owned);
        header
    }

    fn hs256(secret: &[u8], claims: &Value) -> String {
        hmac_token(Algorithm::HS256, secret, claims, None)
    }

    fn hmac_token(alg: Algorithm, secret: &[u8], claims: &Value, kid: Option<&str>) -> String {
        jsonwebtoken::encode(&header(alg, kid), claims, &EncodingKey::from_secret(secret)).unwrap()
    }

    fn rsa_token(alg: Algorithm, claims: &Value, kid: Option<&str>) -> String {
        let key = EncodingKey::from_rsa_pem(&std::fs::read(RSA_PRIVATE).unwrap()).unwrap();
        jsonwebtoken::encode(&header(alg, kid), claims, &key).unwrap()
    }

    fn es256(claims: &Value, kid: Option<&str>) -> String {
        let key = EncodingKey::from_ec_pem(&std::fs::read(EC_PRIVATE).unwrap()).unwrap();
        jsonwebtoken::encode(&header(Algorithm::ES256, kid), claims, &key).unwrap()
    }

    /// Base64url without padding, to hand-build tokens jsonwebtoken refuses to make.
    fn b64url(bytes: &[u8]) -> String {
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let bits = chunk
                .iter()
                .enumerate()
                .fold(0u32, |acc, (i, byte)| acc | (u32::from(*byte) << (16 - 8 * i)));
            for i in 0..=chunk.len() {
                out.push(char::from(ALPHABET[((bits >> (18 - 6 * i)) & 63) as usize]));
            }
        }
        out
    }

    /// The message of an `Unauthorized`; panics on success or any other error.
    fn rejected(result: Result<String, ApiError>) -> String {
        match result {
            Err(ApiError::Unauthorized(message)) => message,
            other => panic!("expected Unauthorized, got {other:?}"),
        }
    }

    #[test]
    fn b64url_matches_known_values() {
        assert_eq!(b64url(b"f"), "Zg");
        assert_eq!(b64url(b"fo"), "Zm8");
        assert_eq!(b64url(b"foo"), "Zm9v");
        assert_eq!(b64url(&[0xfb, 0xff]), "-_8");
    }

    // --- the Authorization header ---

    #[test]
    fn missing_header_is_rejected() {
        assert_eq!(rejected(secret_only().verify_header(None)), "missing bearer token");
        assert_eq!(rejected(secret_only().verify_header(Some("  "))), "missing bearer token");
    }

    #[test]
    fn wrong_scheme_is_rejected() {
        let verifier = secret_only();
        assert_eq!(
            rejected(verifier.verify_header(Some("Basic YWxpY2U6cGFzc3dvcmQ="))),
            "authorization scheme must be Bearer"
        );
        // A bare token without a scheme is not accepted either.
        let token = hs256(SECRET.as_bytes(), &claims());
        assert_eq!(
            rejected(verifier.verify_header(Some(&token))),
            "authorization scheme must be Bearer"
        );
    }

    #[test]
    fn empty_token_is_rejected() {
        let verifier = secret_only();
        assert_eq!(rejected(verifier.verify_header(Some("Bearer"))), "missing bearer token");
        assert_eq!(rejected(verifier.verify_header(Some("Bearer   "))), "missing bearer token");
        assert_eq!(rejected(verifier.verify("")), "malformed token");
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        let verifier = secret_only();
        let token = hs256(SECRET.as_bytes(), &claims());
        for scheme in ["Bearer", "bearer", "BEARER"] {
            let value = format!("{scheme} {token}");
            assert_eq!(verifier.verify_header(Some(&value)).unwrap(), "alice");
        }
        assert_eq!(verifier.verify_header(Some(&format!("  Bearer   {token} "))).unwrap(), "alice");
    }

    // --- malformed tokens ---

    #[test]
    fn garbage_tokens_are_rejected() {
        let verifier = secret_and_jwks();
        let body = b64url(claims().to_string().as_bytes());
        for token in [
            "garbage".to_owned(),
            "a.b".to_owned(),
            "a.b.c.d".to_owned(),
            "!!!.???.***".to_owned(),
            format!("{}.{body}.c2ln", b64url(b"not json")),
            format!("{}.{body}.c2ln", b64url(br#"{"typ":"JWT"}"#)),
        ] {
            assert_eq!(rejected(verifier.verify(&token)), "malformed token", "{token}");
            let header = format!("Bearer {token}");
            assert_eq!(rejected(verifier.verify_header(Some(&header))), "malformed token");
        }
    }

    #[test]
    fn garbage_claims_with_a_valid_signature_are_rejected() {
        let key = EncodingKey::from_secret(SECRET.as_bytes());
        let header = b64url(br#"{"alg":"HS256","typ":"JWT"}"#);
        for claims in [&b"not json"[..], b"[1, 2, 3]", b"\"alice\""] {
            let message = format!("{header}.{}", b64url(claims));
            let signature = jsonwebtoken::crypto::sign(message.as_bytes(), &key, Algorithm::HS256);
            let token = format!("{message}.{}", signature.unwrap());
            assert_eq!(rejected(secret_only().verify(&token)), "malformed token", "{token}");
        }
    }

    #[test]
    fn alg_none_is_rejected() {
        let verifier = secret_and_jwks();
        let token = format!(
            "{}.{}.",
            b64url(br#"{"alg":"none","typ":"JWT"}"#),
            b64url(claims().to_string().as_bytes())
        );
        assert_eq!(rejected(verifier.verify(&token)), "malformed token");
        // Attaching a signature made with the secret does not turn it into HS256.
        let signature = hs256(SECRET.as_bytes(), &claims()).rsplit('.').next().unwrap().to_owned();
        assert_eq!(rejected(verifier.verify(&format!("{token}{signature}"))), "malformed token");
    }

    // --- signature and algorithms ---

    #[test]
    fn hs256_token_is_accepted() {
        let token = hs256(SECRET.as_bytes(), &claims());
        assert_eq!(secret_only().verify(&token).unwrap(), "alice");
        assert_eq!(secret_and_jwks().verify(&token).unwrap(), "alice");
    }

    #[test]
    fn token_signed_with_another_secret_is_rejected() {
        let token = hs256(b"another-secret-another-secret-another", &claims());
        assert_eq!(rejected(secret_only().verify(&token)), "invalid token signature");
    }

    #[test]
    fn hs256_is_rejected_without_a_secret() {
        let token = hs256(SECRET.as_bytes(), &claims());
        assert_eq!(rejected(jwks_only().verify(&token)), "token algorithm not accepted");
    }

    #[test]
    fn rs256_token_is_accepted() {
        let verifier = jwks_only();
        assert_eq!(
            verifier.verify(&rsa_token(Algorithm::RS256, &claims(), Some("rsa-1"))).unwrap(),
            "alice"
        );
        // Without a kid, the RSA keys are tried.
        assert_eq!(
            verifier.verify(&rsa_token(Algorithm::RS256, &claims(), None)).unwrap(),
            "alice"
        );
        assert_eq!(
            secret_and_jwks().verify(&rsa_token(Algorithm::RS256, &claims(), None)).unwrap(),
            "alice"
        );
    }

    #[test]
    fn es256_token_is_accepted() {
        let verifier = jwks_only();
        assert_eq!(verifier.verify(&es256(&claims(), Some("ec-1"))).unwrap(), "alice");
        assert_eq!(verifier.verify(&es256(&claims(), None)).unwrap(), "alice");
    }

    #[test]
    fn rs256_and_es256_are_rejected_without_jwks() {
        let verifier = secret_only();
        assert_eq!(
            rejected(verifier.verify(&rsa_token(Algorithm::RS256, &claims(), None))),
            "token algorithm not accepted"
        );
        assert_eq!(
            rejected(verifier.verify(&es256(&claims(), None))),
            "token algorithm not accepted"
        );
    }

    #[test]
    fn tampered_rs256_token_is_rejected() {
        let token = rsa_token(Algorithm::RS256, &claims(), Some("rsa-1"));
        let (signed, _) = token.rsplit_once('.').unwrap();
        let other =
            rsa_token(Algorithm::RS256, &json!({"sub": "mallory", "exp": now() + 600}), None);
        let forged = format!("{signed}.{}", other.rsplit('.').next().unwrap());
        assert_eq!(rejected(jwks_only().verify(&forged)), "invalid token signature");
        assert_eq!(
            rejected(jwks_only().verify(&format!("{signed}.AAAA"))),
            "invalid token signature"
        );
    }

    #[test]
    fn unknown_kid_is_rejected() {
        let token = rsa_token(Algorithm::RS256, &claims(), Some("rsa-2"));
        assert_eq!(rejected(jwks_only().verify(&token)), "unknown token key id");
    }

    #[test]
    fn kid_of_a_key_of_another_type_is_rejected() {
        let verifier = jwks_only();
        let rs = rsa_token(Algorithm::RS256, &claims(), Some("ec-1"));
        assert_eq!(rejected(verifier.verify(&rs)), "token algorithm not accepted");
        let es = es256(&claims(), Some("rsa-1"));
        assert_eq!(rejected(verifier.verify(&es)), "token algorithm not accepted");
    }

    #[test]
    fn other_algorithms_are_rejected() {
        let verifier = secret_and_jwks();
        let hs384 = hmac_token(Algorithm::HS384, SECRET.as_bytes(), &claims(), None);
        let hs512 = hmac_token(Algorithm::HS512, SECRET.as_bytes(), &claims(), None);
        let rs512 = rsa_token(Algorithm::RS512, &claims(), Some("rsa-1"));
        let ps256 = rsa_token(Algorithm::PS256, &claims(), Some("rsa-1"));
        for token in [hs384, hs512, rs512, ps256] {
            assert_eq!(rejected(verifier.verify(&token)), "token algorithm not accepted");
        }
        // A well-formed EdDSA header naming a JWKS key.
        let ed_header = b64url(br#"{"alg":"EdDSA","typ":"JWT","kid":"ec-1"}"#);
        let body = b64url(claims().to_string().as_bytes());
        assert_eq!(
            rejected(verifier.verify(&format!("{ed_header}.{body}.c2ln"))),
            "token algorithm not accepted"
        );
    }

    #[test]
    fn hs256_signed_with_the_rsa_public_key_is_rejected_with_jwks_only() {
        let public_pem = std::fs::read(RSA_PUBLIC).unwrap();
        let verifier = jwks_only();
        for kid in [None, Some("rsa-1")] {
            let token = hmac_token(Algorithm::HS256, &public_pem, &claims(), kid);
            assert_eq!(rejected(verifier.verify(&token)), "token algorithm not accepted");
        }
    }

    #[test]
    fn hs256_signed_with_the_rsa_public_key_is_rejected_with_secret_and_jwks() {
        let public_pem = std::fs::read(RSA_PUBLIC).unwrap();
        let verifier = secret_and_jwks();
        for kid in [None, Some("rsa-1")] {
            let token = hmac_token(Algorithm::HS256, &public_pem, &claims(), kid);
            // Checked against the shared secret only, so the signature does not match.
            assert_eq!(rejected(verifier.verify(&token)), "invalid token signature");
        }
    }

    // --- claims ---

    #[test]
    fn expired_token_is_rejected() {
        let token = hs256(SECRET.as_bytes(), &json!({"sub": "alice", "exp": now() - 3600}));
        assert_eq!(rejected(secret_only().verify(&token)), "token expired");
    }

    #[test]
    fn expiry_within_the_leeway_is_accepted() {
        let token = hs256(SECRET.as_bytes(), &json!({"sub": "alice", "exp": now() - 10}));
        assert_eq!(secret_only().verify(&token).unwrap(), "alice");
    }

    #[test]
    fn a_remembered_token_still_expires() {
        let verifier = secret_only();
        let token = hs256(SECRET.as_bytes(), &json!({"sub": "alice", "exp": now() + 60}));
        assert_eq!(verifier.verify(&token).unwrap(), "alice");
        assert_eq!(verifier.remembered(&token, now()).as_deref(), Some("alice"));
        // The default leeway is 30 s: past it the memory no longer answers, and the full
        // check says why.
        assert_eq!(verifier.remembered(&token, now() + 60 + 31), None);
    }

    #[test]
    fn only_the_exact_remembered_token_skips_the_checks() {
        let verifier = secret_only();
        let token = hs256(SECRET.as_bytes(), &claims());
        assert_eq!(verifier.verify(&token).unwrap(), "alice");
        let (signed, signature) = token.rsplit_once('.').unwrap();
        // Change the signature's first character: all six of its bits are data. (The last
        // one carries padding bits too, and changing those makes the token malformed instead,
        // which is what this test once did whenever the signature happened to end in 'A'.)
        let first = if signature.starts_with('A') { 'B' } else { 'A' };
        let tampered = format!("{signed}.{first}{}", &signature[1..]);
        assert_eq!(rejected(verifier.verify(&tampered)), "invalid token signature");
        assert_eq!(verifier.verify(&token).unwrap(), "alice");
    }

    #[test]
    fn token_without_exp_is_rejected() {
        let token = hs256(SECRET.as_bytes(), &json!({"sub": "alice"}));
        assert_eq!(rejected(secret_only().verify(&token)), "token has no exp claim");
    }

    #[test]
    fn token_not_yet_valid_is_rejected() {
        let token = hs256(
            SECRET.as_bytes(),
            &json!({"sub": "alice", "nbf": now() + 600, "exp": now() + 1200}),
        );
        assert_eq!(rejected(secret_only().verify(&token)), "token not yet valid");
        let within_leeway = hs256(
            SECRET.as_bytes(),
            &json!({"sub": "alice", "nbf": now() + 10, "exp": now() + 1200}),
        );
        assert_eq!(secret_only().verify(&within_leeway).unwrap(), "alice");
    }

    #[test]
    fn missing_sub_is_rejected() {
        let verifier = secret_only();
        let token = hs256(SECRET.as_bytes(), &json!({"exp": now() + 600}));
        assert_eq!(rejected(verifier.verify(&token)), "token has no sub claim");
        let numeric = hs256(SECRET.as_bytes(), &json!({"sub": 42, "exp": now() + 600}));
        assert_eq!(rejected(verifier.verify(&numeric)), "token has no sub claim");
    }

    #[test]
    fn empty_sub_is_rejected() {
        let token = hs256(SECRET.as_bytes(), &json!({"sub": "", "exp": now() + 600}));
        assert_eq!(rejected(secret_only().verify(&token)), "token has an empty sub claim");
    }

    fn with_issuer_and_audience() -> TokenVerifier {
        let mut settings = settings(Some(SECRET), Some(JWKS));
        settings.issuer = Some("https://auth.example.com/".into());
        settings.audience = Some("chatstore".into());
        TokenVerifier::from_settings(&settings).unwrap()
    }

    fn claims_with(iss: &str, aud: &Value) -> Value {
        json!({ "sub": "alice", "exp": now() + 600, "iss": iss, "aud": aud })
    }

    #[test]
    fn configured_issuer_and_audience_are_accepted() {
        let verifier = with_issuer_and_audience();
        let token = hs256(
            SECRET.as_bytes(),
            &claims_with("https://auth.example.com/", &json!("chatstore")),
        );
        assert_eq!(verifier.verify(&token).unwrap(), "alice");
        let list = claims_with("https://auth.example.com/", &json!(["other", "chatstore"]));
        assert_eq!(verifier.verify(&es256(&list, Some("ec-1"))).unwrap(), "alice");
    }

    #[test]
    fn wrong_issuer_is_rejected() {
        let verifier = with_issuer_and_audience();
        let token = hs256(
            SECRET.as_bytes(),
            &claims_with("https://evil.example.com/", &json!("chatstore")),
        );
        assert_eq!(rejected(verifier.verify(&token)), "invalid token issuer");
        let missing = hs256(
            SECRET.as_bytes(),
            &json!({"sub": "alice", "exp": now() + 600, "aud": "chatstore"}),
        );
        assert_eq!(rejected(verifier.verify(&missing)), "token has no iss claim");
    }

    #[test]
    fn wrong_audience_is_rejected() {
        let verifier = with_issuer_and_audience();
        let token =
            hs256(SECRET.as_bytes(), &claims_with("https://auth.example.com/", &json!("other")));
        assert_eq!(rejected(verifier.verify(&token)), "invalid token audience");
        let missing = hs256(
            SECRET.as_bytes(),
            &json!({"sub": "alice", "exp": now() + 600, "iss": "https://auth.example.com/"}),
        );
        assert_eq!(rejected(verifier.verify(&missing)), "token has no aud claim");
    }

    #[test]
    fn issuer_and_audience_are_not_checked_when_not_configured() {
        let token = hs256(
            SECRET.as_bytes(),
            &claims_with("https://anyone.example.com/", &json!("anything")),
        );
        assert_eq!(secret_only().verify(&token).unwrap(), "alice");
    }

    // --- minting ---

    #[test]
    fn minted_token_round_trips() {
        let mut settings = settings(Some(SECRET), None);
        settings.issuer = Some("https://auth.example.com/".into());
        settings.audience = Some("chatstore".into());
        let token = mint_token(&settings, "alice").unwrap();
        let verifier = TokenVerifier::from_settings(&settings).unwrap();
        assert_eq!(verifier.verify_header(Some(&format!("Bearer {token}"))).unwrap(), "alice");

        let claims: Value = jsonwebtoken::dangerous::insecure_decode_claims(&token).unwrap();
        assert_eq!(claims["iss"], "https://auth.example.com/");
        assert_eq!(claims["aud"], "chatstore");
        let lifetime = claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap();
        assert_eq!(lifetime, settings.token_ttl_secs);
    }

    #[test]
    fn minted_token_without_issuer_or_audience_round_trips() {
        let settings = settings(Some(SECRET), None);
        let token = mint_token(&settings, "bob").unwrap();
        assert_eq!(secret_only().verify(&token).unwrap(), "bob");
        let claims: Value = jsonwebtoken::dangerous::insecure_decode_claims(&token).unwrap();
        assert!(claims.get("iss").is_none() && claims.get("aud").is_none());
    }

    #[test]
    fn mint_token_needs_a_secret_and_a_user() {
        let error = mint_token(&settings(None, Some(JWKS)), "alice").unwrap_err();
        assert!(error.to_string().contains("no auth.jwt_secret"), "{error}");
        // An empty secret counts as unset.
        assert!(mint_token(&settings(Some(""), Some(JWKS)), "alice").is_err());
        let error = mint_token(&settings(Some(SECRET), None), "").unwrap_err();
        assert!(error.to_string().contains("empty user id"), "{error}");
    }

    // --- startup ---

    #[test]
    fn jwks_fixture_has_both_keys() {
        let debug = format!("{:?}", jwks_only());
        assert!(debug.contains(r#"(RS256, Some("rsa-1"))"#), "{debug}");
        assert!(debug.contains(r#"(ES256, Some("ec-1"))"#), "{debug}");
    }

    /// The full message of a refused start with a JWKS file holding `contents`.
    fn startup_error(name: &str, contents: &str) -> String {
        let path =
            std::env::temp_dir().join(format!("chatstore-auth-{}-{name}", std::process::id()));
        std::fs::write(&path, contents).unwrap();
        let result = TokenVerifier::from_settings(&settings(None, path.to_str()));
        std::fs::remove_file(&path).unwrap();
        format!("{:#}", result.unwrap_err())
    }

    #[test]
    fn settings_without_a_secret_or_jwks_are_refused() {
        for settings in [settings(None, None), settings(Some(""), Some(""))] {
            let error = TokenVerifier::from_settings(&settings).unwrap_err();
            assert!(error.to_string().starts_with("no way to verify tokens"), "{error}");
        }
    }

    #[test]
    fn unreadable_or_invalid_jwks_is_refused() {
        let missing = settings(None, Some("/nonexistent/jwks.json"));
        let error = TokenVerifier::from_settings(&missing).unwrap_err();
        assert!(error.to_string().starts_with("cannot read the JWKS file"), "{error}");

        let error = startup_error("not-json.json", "{ not json");
        assert!(error.contains("is not a JWKS document"), "{error}");

        let off_curve = json!({"keys": [
            {"kty": "EC", "crv": "P-256", "kid": "bad",
             "x": b64url(&[1; 32]), "y": b64url(&[2; 32])},
        ]});
        let error = startup_error("off-curve.json", &off_curve.to_string());
        assert!(error.contains("invalid key bad"), "{error}");
    }

    #[test]
    fn jwks_without_a_usable_key_is_refused() {
        let unusable = json!({"keys": [
            {"kty": "oct", "kid": "hmac", "k": b64url(SECRET.as_bytes())},
            {"kty": "OKP", "crv": "Ed25519", "kid": "ed", "x": b64url(&[7; 32])},
            {"kty": "EC", "crv": "P-384", "kid": "p384",
             "x": b64url(&[1; 48]), "y": b64url(&[2; 48])},
            {"kty": "RSA", "kid": "enc", "use": "enc", "n": "AQAB", "e": "AQAB"},
            {"kty": "RSA", "kid": "pss", "alg": "PS256", "n": "AQAB", "e": "AQAB"},
        ]});
        for (name, jwks) in [("unusable.json", unusable), ("empty.json", json!({"keys": []}))] {
            let error = startup_error(name, &jwks.to_string());
            assert!(
                error.ends_with("has no RS256 (RSA) or ES256 (EC P-256) signing key"),
                "{error}"
            );
        }
    }

    #[test]
    fn debug_output_hides_the_secret() {
        let settings = settings(Some(SECRET), Some(JWKS));
        let verifier = TokenVerifier::from_settings(&settings).unwrap();
        for debug in [format!("{verifier:?}"), format!("{settings:?}")] {
            assert!(!debug.contains(SECRET), "{debug}");
        }
        assert!(format!("{verifier:?}").contains("hs256: true"));
    }
}
