//! Who may use showroom: users with roles, authenticated by bearer tokens that are
//! stored only as SHA-256 hashes.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Sales,
    Admin,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub role: Role,
    /// How many active demos this user may hold at once (None: the server default).
    pub max_demos: Option<u32>,
}

impl User {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UserEntry {
    pub name: String,
    pub role: Role,
    /// Hex SHA-256 of each accepted token (`showroom users hash-token` prints one).
    pub token_sha256: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_demos: Option<u32>,
    /// Argon2 hash of the password for the web sign-in form (optional).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_argon2: Option<String>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UsersFile {
    pub users: Vec<UserEntry>,
}

#[derive(Debug, Clone, Default)]
pub struct Users {
    by_hash: HashMap<String, User>,
    by_name: HashMap<String, (User, Option<String>)>,
}

/// Verified against when the user is unknown, so timing does not reveal user names.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2hvd3Jvb21kdW1teXNhbHQ$Jx9pX3ZQh1q2q6W0Yh7Zc2m0f1c4hYy3w5m8T2b9K1E";

pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A new random token (244 bits from the OS's generator via UUIDv4).
pub fn new_token() -> String {
    format!(
        "sr_{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

fn valid_owner_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 63
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c))
}

impl Users {
    /// Parses a users file; errors name the file and the field.
    pub fn parse(file: &str, text: &str) -> Result<Users, String> {
        let value: serde_json::Value =
            serde_saphyr::from_str(text).map_err(|e| format!("{file}: not valid YAML: {e}"))?;
        let parsed: UsersFile = serde_path_to_error::deserialize(value)
            .map_err(|e| format!("{file}: {}: {}", e.path(), e.inner()))?;
        Self::from_entries(parsed.users).map_err(|e| format!("{file}: {e}"))
    }

    pub fn from_entries(entries: Vec<UserEntry>) -> Result<Users, String> {
        let mut by_hash = HashMap::new();
        let mut by_name = HashMap::new();
        for (i, u) in entries.into_iter().enumerate() {
            if let Some(h) = &u.password_argon2
                && !h.starts_with("$argon2")
            {
                return Err(format!(
                    "users[{i}].passwordArgon2: must be an Argon2 hash ($argon2id$...)"
                ));
            }
            let user = User {
                name: u.name.clone(),
                role: u.role,
                max_demos: u.max_demos,
            };
            if by_name
                .insert(u.name.clone(), (user, u.password_argon2.clone()))
                .is_some()
            {
                return Err(format!("users[{i}].name: {:?} appears twice", u.name));
            }
            if !valid_owner_name(&u.name) {
                return Err(format!(
                    "users[{i}].name: {:?} must be 1-63 letters, digits or -_.@",
                    u.name
                ));
            }
            for (j, h) in u.token_sha256.iter().enumerate() {
                let h = h.to_ascii_lowercase();
                if h.len() != 64 || !h.chars().all(|c| c.is_ascii_hexdigit()) {
                    return Err(format!(
                        "users[{i}].tokenSha256[{j}]: must be 64 hex digits"
                    ));
                }
                let user = User {
                    name: u.name.clone(),
                    role: u.role,
                    max_demos: u.max_demos,
                };
                if by_hash.insert(h, user).is_some() {
                    return Err(format!(
                        "users[{i}].tokenSha256[{j}]: the same token is given to two users"
                    ));
                }
            }
        }
        Ok(Users { by_hash, by_name })
    }

    /// The web sign-in form; an unknown user costs the same work as a wrong password.
    pub fn login(&self, name: &str, password: &str) -> Option<&User> {
        match self.by_name.get(name) {
            Some((u, Some(hash))) => super::share::verify_secret(password, hash).then_some(u),
            _ => {
                let _ = super::share::verify_secret(password, DUMMY_HASH);
                None
            }
        }
    }

    pub fn by_name(&self, name: &str) -> Option<&User> {
        self.by_name.get(name).map(|(u, _)| u)
    }

    pub fn authenticate(&self, token: &str) -> Option<&User> {
        self.by_hash.get(&hash_token(token))
    }

    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_authenticate_by_hash() {
        let t = new_token();
        let text = format!(
            "users:\n- name: alice\n  role: sales\n  tokenSha256: [{}]\n",
            hash_token(&t)
        );
        let users = Users::parse("users.yaml", &text).unwrap();
        let u = users.authenticate(&t).unwrap();
        assert_eq!((u.name.as_str(), u.role), ("alice", Role::Sales));
        assert!(users.authenticate("wrong").is_none());
        assert!(!text.contains(&t), "the file holds only the hash");
    }

    #[test]
    fn passwords_sign_in_and_unknown_users_cost_the_same_work() {
        let hash = super::super::share::hash_secret("correct horse");
        let text = format!(
            "users:\n- name: alice\n  role: admin\n  tokenSha256: []\n  passwordArgon2: \"{hash}\"\n"
        );
        let users = Users::parse("u.yaml", &text).unwrap();
        assert_eq!(
            users.login("alice", "correct horse").map(|u| u.role),
            Some(Role::Admin)
        );
        assert!(users.login("alice", "wrong").is_none());
        assert!(users.login("mallory", "correct horse").is_none());
        // The dummy hash parses, so an unknown user runs a real verification.
        assert!(argon2::password_hash::PasswordHash::new(DUMMY_HASH).is_ok());
    }

    #[test]
    fn bad_files_name_the_field() {
        let e = Users::parse(
            "u.yaml",
            "users:\n- name: a\n  role: boss\n  tokenSha256: []\n",
        )
        .unwrap_err();
        assert!(e.starts_with("u.yaml: users[0].role"), "{e}");
        let e = Users::parse(
            "u.yaml",
            "users:\n- name: a\n  role: sales\n  tokenSha256: [abc]\n",
        )
        .unwrap_err();
        assert!(e.contains("tokenSha256[0]"), "{e}");
    }
}
