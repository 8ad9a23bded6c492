//! Signed, expiring URLs for attachment bytes.
//!
//! A browser uploads to ChatKit's `upload_descriptor.url` and shows an image's `preview_url`
//! without sending our bearer token, so those URLs carry their own proof instead: an
//! HMAC-SHA256 over the method, the owner, the attachment and an expiry time, as presigned
//! object-store URLs do.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Mixed into a key derived from the JWT secret, so the two never coincide.
const DERIVATION_LABEL: &[u8] = b"chatstore attachment URL signing v1";

/// What a signed URL grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Upload,
    Download,
}

impl Access {
    fn as_str(self) -> &'static str {
        match self {
            Self::Upload => "PUT",
            Self::Download => "GET",
        }
    }
}

/// Signs and checks attachment URLs; `None` inside when no key is configured.
#[derive(Clone)]
pub struct UrlSigner {
    /// Shared, because the signer is part of the state every request clones (a copy of the
    /// key was an allocation per clone).
    key: Option<Arc<[u8]>>,
}

impl std::fmt::Debug for UrlSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UrlSigner").field("enabled", &self.key.is_some()).finish()
    }
}

impl UrlSigner {
    /// A signer keyed by `explicit`, else by a key derived from `jwt_secret`, else disabled.
    pub fn new(explicit: Option<&str>, jwt_secret: Option<&str>) -> Self {
        let key = match (explicit, jwt_secret) {
            (Some(secret), _) => Some(Arc::from(secret.as_bytes())),
            (None, Some(secret)) => {
                let mut mac = mac(secret.as_bytes());
                mac.update(DERIVATION_LABEL);
                Some(Arc::from(&mac.finalize().into_bytes()[..]))
            }
            (None, None) => None,
        };
        Self { key }
    }

    pub fn is_enabled(&self) -> bool {
        self.key.is_some()
    }

    /// The signature granting `access` to `user`'s attachment until `expires` (Unix seconds).
    pub fn sign(
        &self,
        access: Access,
        user: &str,
        attachment_id: &str,
        expires: i64,
    ) -> Option<String> {
        let key = self.key.as_ref()?;
        let mut mac = mac(key);
        mac.update(&message(access, user, attachment_id, expires));
        Some(URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
    }

    /// Whether `signature` grants `access` now (compared in constant time).
    pub fn verify(
        &self,
        access: Access,
        user: &str,
        attachment_id: &str,
        expires: i64,
        signature: &str,
    ) -> bool {
        let (Some(key), Ok(signature)) = (&self.key, URL_SAFE_NO_PAD.decode(signature)) else {
            return false;
        };
        if expires < chrono::Utc::now().timestamp() {
            return false;
        }
        let mut mac = mac(key);
        mac.update(&message(access, user, attachment_id, expires));
        mac.verify_slice(&signature).is_ok()
    }
}

fn mac(key: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length.
    HmacSha256::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC takes any key length"))
}

/// Length-prefixed fields, so no two different inputs make the same message.
fn message(access: Access, user: &str, attachment_id: &str, expires: i64) -> Vec<u8> {
    let mut message = Vec::new();
    for field in [access.as_str(), user, attachment_id, &expires.to_string()] {
        message.extend_from_slice(&(field.len() as u64).to_be_bytes());
        message.extend_from_slice(field.as_bytes());
    }
    message
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_grants_exactly_what_it_names_until_it_expires() {
        let signer = UrlSigner::new(None, Some("jwt-secret"));
        let later = chrono::Utc::now().timestamp() + 60;
        let signature = signer.sign(Access::Upload, "alice", "atc_1", later).unwrap();
        assert!(signer.verify(Access::Upload, "alice", "atc_1", later, &signature));
        assert!(!signer.verify(Access::Download, "alice", "atc_1", later, &signature));
        assert!(!signer.verify(Access::Upload, "bob", "atc_1", later, &signature));
        assert!(!signer.verify(Access::Upload, "alice", "atc_2", later, &signature));
        assert!(!signer.verify(Access::Upload, "alice", "atc_1", later + 1, &signature));
        assert!(!signer.verify(Access::Upload, "alice", "atc_1", later, "garbage!"));
        let past = chrono::Utc::now().timestamp() - 1;
        let expired = signer.sign(Access::Upload, "alice", "atc_1", past).unwrap();
        assert!(!signer.verify(Access::Upload, "alice", "atc_1", past, &expired));
        // Another key, or none, accepts nothing.
        let other = UrlSigner::new(Some("explicit"), Some("jwt-secret"));
        assert!(!other.verify(Access::Upload, "alice", "atc_1", later, &signature));
        let disabled = UrlSigner::new(None, None);
        assert!(!disabled.is_enabled());
        assert_eq!(disabled.sign(Access::Upload, "alice", "atc_1", later), None);
        assert!(!disabled.verify(Access::Upload, "alice", "atc_1", later, &signature));
        assert!(!format!("{signer:?}").contains("jwt-secret"));
    }
}
