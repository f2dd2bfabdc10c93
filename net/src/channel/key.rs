//! The gate's static X25519 key: derivation of the public half, the key file's text, reading
//! and writing the file (owner-only).

use snow::resolvers::{CryptoResolver, DefaultResolver};

/// A gate's static X25519 key pair.
#[derive(Clone, PartialEq, Eq)]
pub struct StaticKey {
    secret: [u8; 32],
    public: [u8; 32],
}

impl std::fmt::Debug for StaticKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StaticKey(public {})", hex(&self.public))
    }
}

impl StaticKey {
    /// The key pair of a secret (X25519 clamps it).
    pub fn from_secret(secret: [u8; 32]) -> StaticKey {
        let mut dh = DefaultResolver.resolve_dh(&snow::params::DHChoice::Curve25519);
        let mut public = [0u8; 32];
        if let Some(dh) = dh.as_mut() {
            dh.set(&secret);
            public.copy_from_slice(dh.pubkey());
        }
        StaticKey { secret, public }
    }

    /// The public half, which clients pin.
    pub fn public(&self) -> [u8; 32] {
        self.public
    }

    /// The secret half.
    pub fn secret(&self) -> &[u8; 32] {
        &self.secret
    }

    /// The key file's text: the secret as 64 hex digits and a newline.
    pub fn to_file_text(&self) -> String {
        format!("{}\n", hex(&self.secret))
    }

    /// Parses a key file's text (64 hex digits, surrounding whitespace ignored).
    pub fn from_file_text(text: &str) -> Option<StaticKey> {
        parse_key_hex(text).map(StaticKey::from_secret)
    }
}

/// Reads a gate key file (PROTOCOL.md 2.5): 64 hex digits of the X25519 secret.
pub fn read_key_file(path: &std::path::Path) -> Result<StaticKey, String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        format!("cannot read the gate key file {}: {e} (`oxworld keygen --config <conf>` writes one)", path.display())
    })?;
    StaticKey::from_file_text(&text)
        .ok_or_else(|| format!("{}: not a gate key (64 hex digits expected)", path.display()))
}

/// Writes `key` to `path` readable by its owner only, refusing to overwrite an existing file.
pub fn write_key_file(path: &std::path::Path, key: &StaticKey) -> Result<(), String> {
    use std::io::Write as _;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let mut f = opts.open(path).map_err(|e| format!("cannot create the key file {}: {e}", path.display()))?;
    f.write_all(key.to_file_text().as_bytes()).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Lowercase hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// 32 bytes from 64 hex digits (surrounding whitespace ignored).
pub fn parse_key_hex(text: &str) -> Option<[u8; 32]> {
    let t = text.trim();
    if t.len() != 64 || !t.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(t.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}
