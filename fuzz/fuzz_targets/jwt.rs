//! Bearer tokens: any header value, and tokens whose header and claims are arbitrary JSON
//! but correctly signed, so that the claims are read (`sub`, `exp`, `nbf`, `iss`, `aud`).
#![no_main]

use std::collections::HashMap;
use std::sync::LazyLock;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chatstore::auth::TokenVerifier;
use chatstore::settings::Settings;
use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;

/// The development configuration: HS256 with the development secret.
static SETTINGS: LazyLock<Settings> =
    LazyLock::new(|| Settings::load_from_env(&HashMap::new()).expect("default settings"));
static VERIFIER: LazyLock<TokenVerifier> =
    LazyLock::new(|| TokenVerifier::from_settings(&SETTINGS.auth).expect("a verifier"));

/// `header.claims.signature`, signed with the configured secret.
fn signed(header: &[u8], claims: &[u8]) -> String {
    let secret = SETTINGS.auth.secret().expect("a development secret");
    let signing_input =
        format!("{}.{}", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(claims));
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(signing_input.as_bytes());
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = VERIFIER.verify_header(Some(text));
    }
    // Split at the first 0xFF (never in UTF-8 JSON): header JSON, then claims JSON.
    let (header, claims) = match data.iter().position(|&byte| byte == 0xFF) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (&br#"{"alg":"HS256","typ":"JWT"}"#[..], data),
    };
    if let Ok(user) = VERIFIER.verify(&signed(header, claims)) {
        assert!(!user.is_empty(), "a token for the empty user was accepted");
    }
});
