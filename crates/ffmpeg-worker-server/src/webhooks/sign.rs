//! Standard Webhooks signatures (<https://www.standardwebhooks.com/>, "Signature scheme"):
//! `webhook-signature: v1,<base64 of HMAC-SHA256(secret, "{webhook-id}.{webhook-timestamp}.{body}")>`,
//! with the secret given as `whsec_` + base64 (the form Standard Webhooks libraries read).

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac as _};
use sha2::Sha256;

/// Fewest secret bytes accepted: the specification asks for 24 to 64 random bytes.
pub const MIN_SECRET_BYTES: usize = 24;

/// The signing key (`WEBHOOK_SECRET`). Its `Debug` never shows the key.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

/// Why a `WEBHOOK_SECRET` is not usable.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// It lacks the `whsec_` prefix.
    #[error("must be `whsec_` followed by base64 (e.g. whsec_$(openssl rand -base64 32))")]
    Prefix,
    /// What follows the prefix is not standard base64.
    #[error("what follows `whsec_` is not base64: {0}")]
    Base64(#[source] base64::DecodeError),
    /// Too few bytes.
    #[error("is {0} bytes long once decoded; at least {MIN_SECRET_BYTES} are needed")]
    TooShort(usize),
}

impl Secret {
    /// Reads `whsec_<base64>` (at least [`MIN_SECRET_BYTES`] bytes once decoded).
    ///
    /// # Errors
    /// [`SecretError`].
    pub fn parse(text: &str) -> Result<Secret, SecretError> {
        let encoded = text.trim().strip_prefix("whsec_").ok_or(SecretError::Prefix)?;
        let key = STANDARD.decode(encoded).map_err(SecretError::Base64)?;
        if key.len() < MIN_SECRET_BYTES {
            return Err(SecretError::TooShort(key.len()));
        }
        Ok(Secret(key))
    }

    /// The `webhook-signature` header value for message `id` sent at `timestamp` (unix
    /// seconds) with `body`: `v1,<base64 HMAC-SHA256>`.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        // HMAC takes a key of any length.
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.0) else { return String::new() };
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

impl FromStr for Secret {
    type Err = SecretError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Secret::parse(s)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worked example of the Svix / Standard Webhooks verification docs (secret, id,
    /// timestamp, body and signature), also checked with Python's `hmac` module.
    #[test]
    fn signs_like_the_reference_libraries() {
        let secret = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("secret");
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            secret.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn refuses_secrets_that_are_not_whsec_base64_of_enough_bytes() {
        assert!(matches!(Secret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), Err(SecretError::Prefix)));
        assert!(matches!(Secret::parse("whsec_not base64!"), Err(SecretError::Base64(_))));
        assert!(matches!(Secret::parse("whsec_c2hvcnQ="), Err(SecretError::TooShort(5))));
        assert_eq!(format!("{:?}", Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("ok")), "Secret(..)");
    }
}
