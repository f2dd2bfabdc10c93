//! Password storage for the chatroom: Argon2id with a random salt per user, in the PHC string
//! format (`$argon2id$v=19$m=...`), so the parameters travel with each hash and can be raised
//! later without breaking old accounts.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

/// Longest password accepted (bytes): bounds the hashing work one request can cause.
pub(crate) const MAX_PASSWORD: usize = 128;

/// Argon2id cost: 8 MiB and 2 passes, about 10 ms in a release build on this machine. It runs
/// on the game loop, so it is kept low; a deployment that wants more moves it to a worker.
fn hasher() -> Argon2<'static> {
    let params = Params::new(8 * 1024, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// The PHC string of `password` with a fresh random salt.
pub(crate) fn hash(password: &str) -> Result<String, argon2::password_hash::Error> {
    let salt = SaltString::generate(&mut OsRng);
    Ok(hasher().hash_password(password.as_bytes(), &salt)?.to_string())
}

/// True if `password` matches `stored` (a PHC string); false for anything unreadable.
pub(crate) fn verify(password: &str, stored: &str) -> bool {
    PasswordHash::new(stored).is_ok_and(|h| hasher().verify_password(password.as_bytes(), &h).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_salted_and_verify() {
        let a = hash("hunter2").expect("hash");
        let b = hash("hunter2").expect("hash");
        assert_ne!(a, b, "salted");
        assert!(!a.contains("hunter2"));
        assert!(a.starts_with("$argon2id$"));
        assert!(verify("hunter2", &a) && verify("hunter2", &b));
        assert!(!verify("hunter3", &a));
        assert!(!verify("hunter2", "garbage"));
        assert!(!verify("hunter2", ""));
    }
}
