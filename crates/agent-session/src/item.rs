//! A session item: a JSON object, kept as the exact text it was made from.

use std::fmt;

use serde_json::value::RawValue;

use crate::SessionError;

/// One Responses API input item (any JSON object). It keeps its JSON text verbatim, so numbers,
/// escapes and key order survive a round trip through the store unchanged.
#[derive(Clone)]
pub struct Item(Box<RawValue>);

impl Item {
    /// An item from JSON text, which must be an object.
    pub fn from_json(text: &str) -> Result<Self, SessionError> {
        let raw: Box<RawValue> = serde_json::from_str(text)
            .map_err(|err| SessionError::InvalidItem(format!("not JSON: {err}")))?;
        Self::from_raw(raw)
    }

    /// An item from a JSON value, which must be an object.
    pub fn from_value(value: &serde_json::Value) -> Result<Self, SessionError> {
        let raw = serde_json::value::to_raw_value(value)
            .map_err(|err| SessionError::InvalidItem(err.to_string()))?;
        Self::from_raw(raw)
    }

    fn from_raw(raw: Box<RawValue>) -> Result<Self, SessionError> {
        if raw.get().starts_with('{') {
            Ok(Self(raw))
        } else {
            Err(SessionError::InvalidItem(format!("not a JSON object: {}", raw.get())))
        }
    }

    /// The item's JSON text.
    pub fn as_json(&self) -> &str {
        self.0.get()
    }

    /// The item parsed into a JSON value.
    pub fn to_value(&self) -> serde_json::Value {
        // The text was parsed when the item was made, so it parses again.
        serde_json::from_str(self.0.get()).unwrap_or(serde_json::Value::Null)
    }
}

impl fmt::Debug for Item {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_json())
    }
}

impl PartialEq for Item {
    /// Items are equal when their JSON values are (key order and number spelling aside).
    fn eq(&self, other: &Self) -> bool {
        self.as_json() == other.as_json() || self.to_value() == other.to_value()
    }
}

impl serde::Serialize for Item {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de> serde::Deserialize<'de> for Item {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = Box::<RawValue>::deserialize(deserializer)?;
        Self::from_raw(raw).map_err(serde::de::Error::custom)
    }
}
