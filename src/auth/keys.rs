//! API keys: `sfk_<id>_<secret>`, shown once when issued and stored as a
//! salted Argon2id hash. A verified key is remembered by its SHA-256 so
//! that the slow hash runs once per key, not once per request.

use std::collections::HashMap;
use std::sync::Mutex;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use sha2::{Digest, Sha256};

use super::Principal;

/// The prefix that tells an API key from a JWT.
pub const PREFIX: &str = "sfk_";

/// A key just issued: the text given to its holder once, and the hash kept.
pub struct Issued {
    /// The key's id, part of the key.
    pub id: String,
    /// The whole key.
    pub key: String,
    /// The Argon2id hash of its secret, in PHC form.
    pub hash: String,
}

/// Issues a new key.
pub fn issue() -> Issued {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let secret = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    // 16 random bytes (a v4 UUID draws them from the OS) make the salt.
    let salt = SaltString::encode_b64(uuid::Uuid::new_v4().as_bytes());
    // Hashing fails only for a salt or parameters out of range, and these
    // are a 16-byte salt and the library's defaults.
    let hash = salt
        .and_then(|salt| {
            Argon2::default()
                .hash_password(secret.as_bytes(), &salt)
                .map(|h| h.to_string())
        })
        .unwrap_or_default();
    Issued {
        key: format!("{PREFIX}{id}_{secret}"),
        id,
        hash,
    }
}

/// The id and secret of a key, if it has the key's form.
pub fn parse(key: &str) -> Option<(&str, &str)> {
    let (id, secret) = key.strip_prefix(PREFIX)?.split_once('_')?;
    (!id.is_empty() && !secret.is_empty()).then_some((id, secret))
}

/// Whether `secret` is the one `hash` was made from.
pub fn verify(secret: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(secret.as_bytes(), &parsed)
            .is_ok()
    })
}

/// Keys verified since start, by the SHA-256 of the whole key.
#[derive(Default)]
pub struct VerifiedKeys(Mutex<HashMap<[u8; 32], (String, Principal)>>);

impl VerifiedKeys {
    /// The principal of a key verified before.
    pub fn get(&self, key: &str) -> Option<Principal> {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&digest(key))
            .map(|(_, principal)| principal.clone())
    }

    /// Remembers a verified key of id `id`.
    pub fn insert(&self, key: &str, id: &str, principal: Principal) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.insert(digest(key), (id.to_owned(), principal));
    }

    /// Forgets the key of id `id`, when it is revoked.
    pub fn forget(&self, id: &str) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, (key_id, _)| key_id != id);
    }
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_issued_key_verifies_and_another_does_not() {
        let issued = issue();
        let (id, secret) = parse(&issued.key).expect("the key's form");
        assert_eq!(id, issued.id);
        assert!(issued.hash.starts_with("$argon2id$"));
        assert!(!issued.hash.contains(secret));
        assert!(verify(secret, &issued.hash));
        assert!(!verify("guess", &issued.hash));
        assert!(parse("sfk_only").is_none());
        assert!(parse("eyJhbGciOi.x.y").is_none());
    }
}
