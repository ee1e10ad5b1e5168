//! Idempotent submission: a key the client chooses for a submission, kept with the job it
//! created, so that a client that lost the answer (a timeout, a connection reset after the
//! store committed) can send the same submission again and get that job instead of a second
//! one. The HTTP API takes it as the `Idempotency-Key` header (the IETF draft
//! draft-ietf-httpapi-idempotency-key-header, and Stripe's API).
//!
//! The rules ([`Jobs::submit_idempotent`](crate::Jobs::submit_idempotent)):
//! - the first submission with a key creates the job; the store keeps the key (unique across
//!   the store) and the request's [`Idempotency::fingerprint`] in the job's row, written in the
//!   same write as the job;
//! - a repeat with the same key and the same fingerprint answers that job as it is now
//!   ([`Submitted::replayed`]); nothing is checked or queued again;
//! - the same key with another fingerprint is refused
//!   ([`SubmitError::IdempotencyKeyReused`](crate::SubmitError::IdempotencyKeyReused), naming
//!   the job);
//! - two first submissions with one key at the same time make one job: the store's unique key
//!   decides, and the other gets the winner's job as a repeat would;
//! - the key lives as long as the job's record: deleting or purging the job frees it.
//!
//! What the fingerprint covers is the front end's business (HTTP: the JSON body, normalised);
//! this crate only compares it.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::model::Job;

/// Longest idempotency key, in bytes (= characters: keys are ASCII).
pub const MAX_KEY_LEN: usize = 255;

/// A client's idempotency key: 1 to [`MAX_KEY_LEN`] visible ASCII characters (`!` to `~`,
/// 0x21 to 0x7E; no spaces or control characters). Compared exactly (case matters).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IdempotencyKey(String);

/// Why a text is not an [`IdempotencyKey`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidIdempotencyKey {
    /// The key is empty.
    #[error("the idempotency key is empty; it must be 1 to {MAX_KEY_LEN} visible ASCII characters")]
    Empty,
    /// The key is longer than [`MAX_KEY_LEN`] bytes; holds its length.
    #[error("the idempotency key is {0} bytes long; at most {MAX_KEY_LEN} visible ASCII characters are allowed")]
    TooLong(usize),
    /// A character outside `!` to `~` (a space, a control character, non-ASCII); holds its
    /// 1-based position (in characters).
    #[error(
        "character {0} of the idempotency key is not a visible ASCII character (`!` to `~`; no spaces, control or \
         non-ASCII characters)"
    )]
    NotVisible(usize),
}

impl IdempotencyKey {
    /// Checks `s` as a key.
    ///
    /// # Errors
    /// [`InvalidIdempotencyKey`]: empty, longer than [`MAX_KEY_LEN`] bytes, or a character
    /// outside 0x21..=0x7E.
    ///
    /// ```
    /// use jobs::idempotency::{IdempotencyKey, InvalidIdempotencyKey};
    /// let key = IdempotencyKey::parse("8e03978e-40d5-43e8-bc93-6894a57f9324")?;
    /// assert_eq!(key.as_str(), "8e03978e-40d5-43e8-bc93-6894a57f9324");
    /// assert_eq!(IdempotencyKey::parse("a b"), Err(InvalidIdempotencyKey::NotVisible(2)));
    /// # Ok::<(), InvalidIdempotencyKey>(())
    /// ```
    pub fn parse(s: &str) -> Result<IdempotencyKey, InvalidIdempotencyKey> {
        if s.is_empty() {
            return Err(InvalidIdempotencyKey::Empty);
        }
        if let Some(position) = s.chars().position(|c| !c.is_ascii_graphic()) {
            return Err(InvalidIdempotencyKey::NotVisible(position + 1));
        }
        if s.len() > MAX_KEY_LEN {
            return Err(InvalidIdempotencyKey::TooLong(s.len()));
        }
        Ok(IdempotencyKey(s.to_owned()))
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for IdempotencyKey {
    type Error = InvalidIdempotencyKey;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        IdempotencyKey::parse(&s)
    }
}

impl From<IdempotencyKey> for String {
    fn from(key: IdempotencyKey) -> String {
        key.0
    }
}

/// A submission's idempotency: its key and the fingerprint of its request, kept with the job
/// it created ([`Job::idempotency`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Idempotency {
    /// The client's key.
    pub key: IdempotencyKey,
    /// What identifies the request, compared when the key comes again: equal means the same
    /// request. Opaque to this crate (HTTP: `sha256:` and the hex SHA-256 of the normalised
    /// JSON body); at most a few hundred bytes.
    pub fingerprint: String,
}

/// What [`Jobs::submit_idempotent`](crate::Jobs::submit_idempotent) answers: the job, and
/// whether it already existed.
#[derive(Debug, Clone, PartialEq)]
pub struct Submitted {
    /// The new job, or (a repeat) the job the key belongs to, as it is now.
    pub job: Job,
    /// `true` when the key named an existing job for the same request: nothing was queued.
    pub replayed: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_one_to_255_visible_ascii_characters() {
        let check = |key: &str, expected: Result<(), InvalidIdempotencyKey>| {
            assert_eq!(IdempotencyKey::parse(key).map(|k| assert_eq!(k.as_str(), key)), expected, "{key:?}");
        };
        check("a", Ok(()));
        check("!~\"\\{}", Ok(()));
        check(&"k".repeat(255), Ok(()));
        check("", Err(InvalidIdempotencyKey::Empty));
        check(&"k".repeat(256), Err(InvalidIdempotencyKey::TooLong(256)));
        check("ab cd", Err(InvalidIdempotencyKey::NotVisible(3)));
        check("ab\tcd", Err(InvalidIdempotencyKey::NotVisible(3)));
        check("\u{7f}", Err(InvalidIdempotencyKey::NotVisible(1)));
        check("clé", Err(InvalidIdempotencyKey::NotVisible(3)));
        // A non-ASCII character is named as such, whatever the length.
        check(&format!("{}é", "k".repeat(300)), Err(InvalidIdempotencyKey::NotVisible(301)));
    }
}
