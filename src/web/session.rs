//! Signed session cookies for the web UI (stateless, so any replica can serve any
//! request) and CSRF tokens derived from them.

use hmac::{Hmac, Mac};
use sha2::Sha256;

pub const COOKIE: &str = "showroom_session";
/// Sessions last a working day.
pub const TTL_SECS: i64 = 12 * 3600;

#[derive(Clone)]
pub struct SessionKey(Vec<u8>);

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKey(..)")
    }
}

impl SessionKey {
    pub fn new(secret: &[u8]) -> Self {
        SessionKey(secret.to_vec())
    }

    /// A random key: sessions end when the process does (fine for `showroom dev`).
    pub fn random() -> Self {
        let mut k = Vec::new();
        for _ in 0..2 {
            k.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
        }
        SessionKey(k)
    }

    fn mac(&self, msg: &str) -> String {
        let mut m =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("HMAC takes any key length");
        m.update(msg.as_bytes());
        hex::encode(m.finalize().into_bytes())
    }

    /// `name|expiry|signature`
    pub fn issue(&self, user: &str, now: i64) -> String {
        let body = format!("{user}|{}", now + TTL_SECS);
        format!("{body}|{}", self.mac(&body))
    }

    /// The user name in a valid, unexpired cookie value.
    pub fn verify(&self, value: &str, now: i64) -> Option<String> {
        let (body, sig) = value.rsplit_once('|')?;
        let expected = self.mac(body);
        if !constant_eq(sig.as_bytes(), expected.as_bytes()) {
            return None;
        }
        let (user, exp) = body.rsplit_once('|')?;
        (exp.parse::<i64>().ok()? > now).then(|| user.to_string())
    }

    /// The CSRF token for a session: forms carry it; only this session's pages know it.
    pub fn csrf(&self, session_value: &str) -> String {
        self.mac(&format!("csrf|{session_value}"))
    }

    pub fn check_csrf(&self, session_value: &str, token: &str) -> bool {
        constant_eq(self.csrf(session_value).as_bytes(), token.as_bytes())
    }
}

fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A cookie's value from a Cookie header.
pub fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header
        .split(';')
        .map(str::trim)
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_verify_expire_and_resist_tampering() {
        let k = SessionKey::random();
        let v = k.issue("alice", 1000);
        assert_eq!(k.verify(&v, 1001).as_deref(), Some("alice"));
        assert_eq!(k.verify(&v, 1000 + TTL_SECS), None, "expired");
        assert_eq!(
            k.verify(&v.replace("alice", "carol"), 1001),
            None,
            "tampered"
        );
        assert_eq!(SessionKey::random().verify(&v, 1001), None, "other key");
        let t = k.csrf(&v);
        assert!(k.check_csrf(&v, &t));
        assert!(!k.check_csrf(&k.issue("bob", 1000), &t));
        assert_eq!(
            cookie("a=1; showroom_session=x|y; b=2", COOKIE),
            Some("x|y")
        );
    }
}
