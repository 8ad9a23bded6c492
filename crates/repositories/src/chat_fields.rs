//! A chat's own metadata and tags, checked once where they enter.

use std::collections::HashSet;

use crate::{RepoError, RepoResult};

/// Largest metadata object, in bytes of its JSON text.
pub const MAX_METADATA_BYTES: usize = 16 * 1024;
/// Most tags on one chat (after duplicates are dropped).
pub const MAX_TAGS: usize = 32;
/// Longest tag, in characters (Unicode scalar values, as titles count them).
pub const MAX_TAG_CHARS: usize = 64;

/// A chat's metadata: the text of one JSON object of at most [`MAX_METADATA_BYTES`], kept
/// exactly as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata(String);

impl Metadata {
    /// `json` must be one JSON value (as `serde_json::value::RawValue` holds it), which must
    /// be an object.
    pub fn parse(json: &str) -> RepoResult<Self> {
        if !json.starts_with('{') {
            return Err(RepoError::Invalid("metadata must be a JSON object".into()));
        }
        if json.len() > MAX_METADATA_BYTES {
            return Err(RepoError::Invalid(format!(
                "metadata must be at most {MAX_METADATA_BYTES} bytes of JSON"
            )));
        }
        Ok(Self(json.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for Metadata {
    fn default() -> Self {
        Self("{}".to_owned())
    }
}

/// A set of tags: up to [`MAX_TAGS`] distinct strings of 1..=[`MAX_TAG_CHARS`] characters,
/// in the order first given. Tags are compared exactly (case and all).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tags(Vec<String>);

impl Tags {
    /// Checks every tag and drops repeats: a tag given twice is still one tag, as in a set.
    pub fn parse(tags: Vec<String>) -> RepoResult<Self> {
        let mut seen = HashSet::new();
        let mut distinct = Vec::with_capacity(tags.len());
        for tag in tags {
            let chars = tag.chars().count();
            if chars == 0 || chars > MAX_TAG_CHARS {
                return Err(RepoError::Invalid(format!(
                    "a tag must be 1 to {MAX_TAG_CHARS} characters, not {chars}"
                )));
            }
            if tag.contains('\0') {
                return Err(RepoError::Invalid("a tag must not contain NUL characters".into()));
            }
            if seen.insert(tag.clone()) {
                distinct.push(tag);
            }
        }
        if distinct.len() > MAX_TAGS {
            return Err(RepoError::Invalid(format!(
                "at most {MAX_TAGS} distinct tags, not {}",
                distinct.len()
            )));
        }
        Ok(Self(distinct))
    }

    pub fn as_slice(&self) -> &[String] {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The tags as the JSON array the `chats.tags` column holds.
    pub(crate) fn to_json(&self) -> String {
        serde_json::to_string(&self.0).unwrap_or_else(|_| "[]".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_are_dropped_in_first_given_order() {
        let tags = Tags::parse(vec!["b".into(), "a".into(), "b".into()]).expect("valid tags");
        assert_eq!(tags.as_slice(), ["b", "a"]);
        assert_eq!(tags.to_json(), r#"["b","a"]"#);
    }

    #[test]
    fn tags_are_counted_in_characters() {
        assert!(Tags::parse(vec!["é".repeat(MAX_TAG_CHARS)]).is_ok());
        assert!(Tags::parse(vec!["é".repeat(MAX_TAG_CHARS + 1)]).is_err());
        assert!(Tags::parse(vec![String::new()]).is_err());
        let many = (0..=MAX_TAGS).map(|n| n.to_string()).collect();
        assert!(Tags::parse(many).is_err());
        let repeated = (0..=MAX_TAGS).map(|_| "same".to_owned()).collect();
        assert!(Tags::parse(repeated).is_ok());
    }

    #[test]
    fn metadata_is_an_object_of_bounded_size() {
        assert_eq!(Metadata::parse(r#"{"a": 1}"#).expect("an object").as_str(), r#"{"a": 1}"#);
        for bad in ["[]", "null", "\"x\"", "1"] {
            assert!(Metadata::parse(bad).is_err(), "{bad}");
        }
        let big = format!("{{\"a\":\"{}\"}}", "x".repeat(MAX_METADATA_BYTES));
        assert!(Metadata::parse(&big).is_err());
    }
}
