//! Password storage for the chatroom: Argon2id with a random salt per user, in the PHC string
//! format (`$argon2id$v=19$m=...`), so the parameters travel with each hash and can be raised
//! later without breaking old accounts. The 8 MiB of Argon2 working memory is allocated once
//! per thread and reused: allocating it per login fragmented the game's heap (1,000 logins
//! left 4 GB resident).

use std::cell::RefCell;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{Output, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};

/// Longest password accepted (bytes): bounds the hashing work one request can cause.
pub(crate) const MAX_PASSWORD: usize = 128;

/// Argon2id cost: 8 MiB and 2 passes, about 10 ms in a release build on this machine. It runs
/// on the game loop, so it is kept low; a deployment that wants more moves it to a worker.
const M_COST_KIB: u32 = 8 * 1024;
const T_COST: u32 = 2;
const HASH_BYTES: usize = 32;
/// Largest memory cost a stored hash may ask for (KiB): a hostile or corrupt record cannot
/// make a login allocate more.
const MAX_M_COST_KIB: u32 = 64 * 1024;

thread_local! {
    static MEMORY: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

/// Runs Argon2id with `params` into `out`, on this thread's reused working memory.
fn run(params: Params, password: &str, salt: &[u8], out: &mut [u8]) -> Result<(), argon2::Error> {
    let a = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    MEMORY.with(|m| {
        let mut m = m.borrow_mut();
        let need = a.params().block_count();
        if m.len() < need {
            m.resize(need, Block::default());
        }
        a.hash_password_into_with_memory(password.as_bytes(), salt, out, &mut m[..need])
    })
}

fn params() -> Result<Params, argon2::Error> {
    Params::new(M_COST_KIB, T_COST, 1, Some(HASH_BYTES))
}

/// The PHC string of `password` with a fresh random salt.
pub(crate) fn hash(password: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut OsRng);
    let mut raw_salt = [0u8; 64];
    let raw_salt = salt.decode_b64(&mut raw_salt).map_err(|e| e.to_string())?;
    let mut out = [0u8; HASH_BYTES];
    run(params().map_err(|e| e.to_string())?, password, raw_salt, &mut out).map_err(|e| e.to_string())?;
    let output = Output::new(&out).map_err(|e| e.to_string())?;
    Ok(format!("$argon2id$v=19$m={M_COST_KIB},t={T_COST},p=1${}${output}", salt.as_str()))
}

/// True if `password` matches `stored` (a PHC string); false for anything unreadable.
pub(crate) fn verify(password: &str, stored: &str) -> bool {
    let Ok(h) = PasswordHash::new(stored) else { return false };
    let (Some(salt), Some(want)) = (h.salt, h.hash) else { return false };
    let Ok(params) = Params::try_from(&h) else { return false };
    if h.algorithm.as_str() != "argon2id" || params.m_cost() > MAX_M_COST_KIB || want.len() > 64 {
        return false;
    }
    let mut raw_salt = [0u8; 64];
    let Ok(raw_salt) = salt.decode_b64(&mut raw_salt) else { return false };
    let mut out = [0u8; 64];
    let out = &mut out[..want.len()];
    if run(params, password, raw_salt, out).is_err() {
        return false;
    }
    // `Output` compares in constant time.
    Output::new(out).is_ok_and(|got| got == want)
}

#[cfg(test)]
mod tests {
    use argon2::PasswordVerifier as _;

    use super::*;

    #[test]
    fn hashes_are_salted_and_verify() {
        let a = hash("hunter2").expect("hash");
        let b = hash("hunter2").expect("hash");
        assert_ne!(a, b, "salted");
        assert!(!a.contains("hunter2"));
        assert!(a.starts_with("$argon2id$v=19$m=8192,t=2,p=1$"));
        assert!(verify("hunter2", &a) && verify("hunter2", &b));
        assert!(!verify("hunter3", &a));
        assert!(!verify("hunter2", "garbage"));
        assert!(!verify("hunter2", ""));
        // The standard implementation agrees with ours, both ways.
        let parsed = PasswordHash::new(&a).expect("PHC string");
        assert!(Argon2::default().verify_password(b"hunter2", &parsed).is_ok());
        let theirs = argon2::PasswordHasher::hash_password(
            &Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::new(4096, 1, 1, None).expect("params")),
            b"pw",
            &SaltString::generate(&mut OsRng),
        )
        .expect("hash")
        .to_string();
        assert!(verify("pw", &theirs) && !verify("px", &theirs));
        // A stored hash asking for absurd memory is refused, not obeyed.
        let greedy = theirs.replace("m=4096", "m=4000000");
        assert!(!verify("pw", &greedy));
    }
}
