//! Share links: a random token (at least 128 bits) in a URL that a prospect opens.
//! Only the token's SHA-256 is stored; an optional passcode is stored as an Argon2 hash.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

/// 256 bits from the OS generator (two UUIDv4s carry 244 random bits; we use 32 bytes).
pub fn new_token() -> String {
    let a = uuid::Uuid::new_v4();
    let b = uuid::Uuid::new_v4();
    let mut bytes = Vec::with_capacity(32);
    bytes.extend_from_slice(a.as_bytes());
    bytes.extend_from_slice(b.as_bytes());
    hex::encode(bytes)
}

/// A short public id (not secret): names the link in URLs and the proxy host name.
pub fn new_id() -> String {
    format!("l{}", &uuid::Uuid::new_v4().simple().to_string()[..9])
}

pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A token as it appears in a URL: 64 lowercase hex digits.
pub fn looks_like_token(t: &str) -> bool {
    t.len() == 64
        && t.chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
}

pub fn hash_secret(secret: &str) -> String {
    // 16 random bytes from the OS generator, via UUIDv4.
    let Ok(salt) = SaltString::encode_b64(uuid::Uuid::new_v4().as_bytes()) else {
        return String::new();
    };
    Argon2::default()
        .hash_password(secret.as_bytes(), &salt)
        .map(|h| h.to_string())
        .unwrap_or_default()
}

pub fn verify_secret(secret: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| {
        Argon2::default()
            .verify_password(secret.as_bytes(), &h)
            .is_ok()
    })
}

/// Why a link does not open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inactive {
    Unknown,
    Revoked,
    Expired,
}

impl Inactive {
    /// 404 for a link that never existed, 410 for one that ended.
    pub fn status(self) -> u16 {
        match self {
            Inactive::Unknown => 404,
            Inactive::Revoked | Inactive::Expired => 410,
        }
    }
}

/// Whether a stored link is usable now; the demo's own expiry bounds it too.
pub fn check(
    revoked: bool,
    expires_at: Option<DateTime<Utc>>,
    demo_expires: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<(), Inactive> {
    if revoked {
        return Err(Inactive::Revoked);
    }
    if expires_at.is_some_and(|e| now >= e) || now >= demo_expires {
        return Err(Inactive::Expired);
    }
    Ok(())
}

/// A link's expiry, never beyond the demo's; in the past is refused.
pub fn bound_expiry(
    wanted: Option<DateTime<Utc>>,
    demo_expires: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, String> {
    match wanted {
        None => Ok(None),
        Some(e) if e <= now => Err("expiresAt must be in the future".into()),
        Some(e) if e > demo_expires => Err(format!(
            "expiresAt must not be after the demo's expiry ({})",
            demo_expires.to_rfc3339()
        )),
        Some(e) => Ok(Some(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    #[test]
    fn tokens_are_long_random_and_stored_hashed() {
        let (a, b) = (new_token(), new_token());
        assert_ne!(a, b);
        assert!(looks_like_token(&a), "{a}");
        assert_eq!(a.len() * 4, 256);
        assert_eq!(hash_token(&a), hash_token(&a));
        assert_ne!(hash_token(&a), a);
        assert!(!looks_like_token("short"));
    }

    #[test]
    fn passcodes_verify() {
        let h = hash_secret("acme-2026");
        assert!(h.starts_with("$argon2"));
        assert!(verify_secret("acme-2026", &h));
        assert!(!verify_secret("wrong", &h));
        assert!(!verify_secret("x", "not a hash"));
    }

    #[test]
    fn links_end_when_revoked_or_expired_or_with_the_demo() {
        let now = Utc::now();
        let later = now + Duration::hours(1);
        assert_eq!(check(false, None, later, now), Ok(()));
        assert_eq!(check(true, None, later, now), Err(Inactive::Revoked));
        assert_eq!(
            check(false, Some(now - Duration::seconds(1)), later, now),
            Err(Inactive::Expired)
        );
        assert_eq!(check(false, None, now, now), Err(Inactive::Expired));
        assert_eq!(Inactive::Unknown.status(), 404);
        assert_eq!(Inactive::Revoked.status(), 410);
        assert!(bound_expiry(Some(later + Duration::hours(1)), later, now).is_err());
        assert!(bound_expiry(Some(now - Duration::hours(1)), later, now).is_err());
        assert_eq!(
            bound_expiry(Some(now + Duration::minutes(5)), later, now).unwrap(),
            Some(now + Duration::minutes(5))
        );
    }
}
