//! Resume tokens: `"{epoch}.{hex HMAC-SHA256(secret, session, user, epoch)}"`.

use hmac::{Hmac, KeyInit, Mac};
use rand::RngCore;
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The server secret resume tokens are signed with. Nodes that share
/// sessions must share it.
#[derive(Clone)]
pub struct TokenSecret([u8; 32]);

impl std::fmt::Debug for TokenSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenSecret(..)") // never print the secret
    }
}

impl TokenSecret {
    /// A secret from 32 bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        TokenSecret(bytes)
    }

    /// A random secret from the operating system's generator.
    pub fn random() -> Self {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        TokenSecret(bytes)
    }

    fn mac(&self, session_id: &str, user_id: &str, epoch: u64) -> HmacSha256 {
        // A key of any length is accepted by HMAC; `new_from_slice` cannot fail.
        let mut mac = match HmacSha256::new_from_slice(&self.0) {
            Ok(mac) => mac,
            Err(_) => unreachable!("HMAC accepts keys of any length"),
        };
        // Length-prefix the fields so ("ab", "c") and ("a", "bc") differ.
        for field in [session_id.as_bytes(), user_id.as_bytes()] {
            mac.update(&(field.len() as u64).to_be_bytes());
            mac.update(field);
        }
        mac.update(&epoch.to_be_bytes());
        mac
    }

    /// The token for a session, user and epoch.
    pub fn token(&self, session_id: &str, user_id: &str, epoch: u64) -> String {
        let tag = self.mac(session_id, user_id, epoch).finalize().into_bytes();
        format!("{epoch}.{}", hex::encode(tag))
    }

    /// The epoch a token was issued for, if it is well formed and its
    /// signature verifies (compared in constant time) for this session and
    /// user.
    pub fn verify(&self, token: &str, session_id: &str, user_id: &str) -> Option<u64> {
        let (epoch, tag) = token.split_once('.')?;
        let epoch: u64 = epoch.parse().ok()?;
        let tag = hex::decode(tag).ok()?;
        self.mac(session_id, user_id, epoch)
            .verify_slice(&tag)
            .ok()
            .map(|()| epoch)
    }
}

/// A new session id: 128 random bits, as 32 hex digits.
pub fn new_session_id() -> String {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_bind_session_user_and_epoch() {
        let s = TokenSecret::random();
        let t = s.token("sess", "alice", 3);
        assert_eq!(s.verify(&t, "sess", "alice"), Some(3));
        assert_eq!(s.verify(&t, "sess", "bob"), None);
        assert_eq!(s.verify(&t, "other", "alice"), None);
        assert_eq!(TokenSecret::random().verify(&t, "sess", "alice"), None);
        let forged = t.replacen('3', "4", 1);
        assert_eq!(s.verify(&forged, "sess", "alice"), None);
        for bad in ["", ".", "x.y", "3.", "3.zz", "-1.00"] {
            assert_eq!(s.verify(bad, "sess", "alice"), None, "{bad:?}");
        }
        assert_ne!(s.token("ab", "c", 1), s.token("a", "bc", 1));
    }

    #[test]
    fn session_ids_are_128_bit_hex() {
        let a = new_session_id();
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(a, new_session_id());
        assert!(!format!("{:?}", TokenSecret::random()).contains(|c: char| c.is_ascii_digit()));
    }
}
