//! The Noise NK handshake's set-up through `snow`: the prologue, and a resolver whose
//! randomness comes from the caller's seed (no RNG inside the channel).

use chacha20::ChaCha12Rng;
use chacha20::rand_core::{Rng as _, SeedableRng as _};
use snow::params::NoiseParams;
use snow::resolvers::{CryptoResolver, DefaultResolver};
use snow::types::{Cipher, Dh, Hash, Random};

use super::{HELLO_HEADER, NOISE_PARAMS, PROLOGUE_PREFIX};

pub(super) fn builder<'a>(seed: [u8; 32], header: &[u8; HELLO_HEADER]) -> SeededBuilder<'a> {
    SeededBuilder { seed, prologue: prologue(header), key: None, remote: None }
}

fn prologue(header: &[u8; HELLO_HEADER]) -> Vec<u8> {
    let mut p = PROLOGUE_PREFIX.to_vec();
    p.extend_from_slice(header);
    p
}

/// snow's builder borrows its inputs; this keeps them together until `build_*`.
pub(super) struct SeededBuilder<'a> {
    seed: [u8; 32],
    prologue: Vec<u8>,
    key: Option<&'a [u8]>,
    remote: Option<&'a [u8]>,
}

impl<'a> SeededBuilder<'a> {
    pub(super) fn local_private_key(mut self, k: &'a [u8]) -> Result<Self, snow::Error> {
        self.key = Some(k);
        Ok(self)
    }

    pub(super) fn remote_public_key(mut self, k: &'a [u8]) -> Result<Self, snow::Error> {
        self.remote = Some(k);
        Ok(self)
    }

    fn start(&self) -> Result<snow::Builder<'_>, snow::Error> {
        let params: NoiseParams = NOISE_PARAMS.parse()?;
        let mut b =
            snow::Builder::with_resolver(params, Box::new(SeededResolver(self.seed))).prologue(&self.prologue)?;
        if let Some(k) = self.key {
            b = b.local_private_key(k)?;
        }
        if let Some(k) = self.remote {
            b = b.remote_public_key(k)?;
        }
        Ok(b)
    }

    pub(super) fn build_responder(self) -> Result<snow::HandshakeState, snow::Error> {
        self.start()?.build_responder()
    }

    pub(super) fn build_initiator(self) -> Result<snow::HandshakeState, snow::Error> {
        self.start()?.build_initiator()
    }
}

/// snow's default primitives, with the randomness from the caller's seed.
struct SeededResolver([u8; 32]);

pub(super) struct SeededRandom(pub(super) ChaCha12Rng);

impl Random for SeededRandom {
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), snow::Error> {
        self.0.fill_bytes(dest);
        Ok(())
    }
}

impl CryptoResolver for SeededResolver {
    fn resolve_rng(&self) -> Option<Box<dyn Random>> {
        Some(Box::new(SeededRandom(ChaCha12Rng::from_seed(self.0))))
    }
    fn resolve_dh(&self, choice: &snow::params::DHChoice) -> Option<Box<dyn Dh>> {
        DefaultResolver.resolve_dh(choice)
    }
    fn resolve_hash(&self, choice: &snow::params::HashChoice) -> Option<Box<dyn Hash>> {
        DefaultResolver.resolve_hash(choice)
    }
    fn resolve_cipher(&self, choice: &snow::params::CipherChoice) -> Option<Box<dyn Cipher>> {
        DefaultResolver.resolve_cipher(choice)
    }
}
