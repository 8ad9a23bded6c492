//! The one rule for ids (users, sessions, chats, threads, items, attachments), checked once
//! where an id enters: a path, a body, a token.

use std::fmt;
use std::ops::Deref;

use serde::{Deserialize, Serialize};

use crate::RepoError;

/// An id every table can store: non-empty UTF-8 of at most [`Id::MAX_BYTES`] bytes, without
/// NUL (which PostgreSQL cannot store in text). Holding one means it was checked.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Id(String);

/// Why a string is not an [`Id`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("must not be empty")]
    Empty,
    #[error("must be at most {} bytes", Id::MAX_BYTES)]
    TooLong,
    #[error("must not contain NUL characters")]
    Nul,
}

impl Id {
    /// Longest id accepted, in bytes.
    pub const MAX_BYTES: usize = 255;

    /// Checks `text` against the rule.
    pub fn check(text: &str) -> Result<(), IdError> {
        if text.is_empty() {
            Err(IdError::Empty)
        } else if text.len() > Self::MAX_BYTES {
            Err(IdError::TooLong)
        } else if text.contains('\0') {
            Err(IdError::Nul)
        } else {
            Ok(())
        }
    }

    /// `text` as an id; the error names it as `what` (`"thread_id must not be empty"`).
    pub fn parse(what: &str, text: impl Into<String>) -> Result<Self, RepoError> {
        let text = text.into();
        match Self::check(&text) {
            Ok(()) => Ok(Self(text)),
            Err(reason) => Err(RepoError::Invalid(format!("{what} {reason}"))),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl TryFrom<String> for Id {
    type Error = String;

    /// The error, in a path or a body's field, says which rule the id broke.
    fn try_from(text: String) -> Result<Self, String> {
        Self::check(&text).map(|()| Self(text)).map_err(|reason| format!("an id {reason}"))
    }
}

impl From<Id> for String {
    fn from(id: Id) -> Self {
        id.0
    }
}

impl Deref for Id {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Id {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A page cursor (`after`) where an empty string means none, as the SDK's stores test
/// `if after:`; any other value must be an [`Id`].
pub fn optional_cursor<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Id>, D::Error> {
    let text = Option::<String>::deserialize(deserializer)?;
    text.filter(|text| !text.is_empty())
        .map(|text| Id::try_from(text).map_err(serde::de::Error::custom))
        .transpose()
}

/// A page cursor (`after`) that, when given at all, must be an [`Id`], so `after=` is refused.
/// For query parsers (`axum_extra`'s `Query`) that would read an empty value as absent; use
/// it with `#[serde(default)]`.
pub fn given_cursor<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Id>, D::Error> {
    let text = String::deserialize(deserializer)?;
    Id::try_from(text).map(Some).map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule_holds_at_its_edges() {
        assert!(Id::check(&"é".repeat(127)).is_ok()); // 254 bytes
        assert!(Id::check(&("é".repeat(127) + "x")).is_ok()); // 255 bytes
        assert_eq!(Id::check(&"x".repeat(256)), Err(IdError::TooLong));
        assert_eq!(Id::check(""), Err(IdError::Empty));
        assert_eq!(Id::check("a\0b"), Err(IdError::Nul));
        let message = Id::parse("thread_id", "").map_err(|err| err.to_string());
        assert_eq!(message, Err("thread_id must not be empty".to_owned()));
    }

    #[test]
    fn ids_deserialize_only_when_valid() {
        let id: Id = serde_json::from_str("\"thr_1\"").expect("a valid id");
        assert_eq!(id.as_str(), "thr_1");
        assert!(serde_json::from_str::<Id>("\"\"").is_err());
        assert!(serde_json::from_str::<Id>("\"a\\u0000\"").is_err());
    }
}
