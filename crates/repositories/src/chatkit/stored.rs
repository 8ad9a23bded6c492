//! Reading the few fields the store needs out of ChatKit JSON text, without re-encoding it.

use std::borrow::Cow;

use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::Value;

/// The top-level fields the store looks at; everything else is kept in the text, unread.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Fields {
    pub(crate) id: Option<Value>,
    #[serde(rename = "type")]
    pub(crate) kind: Option<Value>,
    pub(crate) created_at: Option<Value>,
    pub(crate) title: Option<Value>,
    pub(crate) thread_id: Option<Value>,
    pub(crate) name: Option<Value>,
    pub(crate) mime_type: Option<Value>,
}

/// Parses `json` (which must be one JSON object, nothing else) for its interesting fields.
pub(crate) fn fields(what: &str, json: &str) -> Result<Fields, String> {
    if !json.trim_start().starts_with('{') {
        return Err(format!("the {what} must be a JSON object"));
    }
    serde_json::from_str::<Fields>(json).map_err(|err| format!("the {what} is not valid: {err}"))
}

/// A required, non-empty string field.
pub(crate) fn required_string(
    what: &str,
    field: &str,
    value: Option<Value>,
) -> Result<String, String> {
    match value {
        Some(Value::String(text)) if !text.is_empty() => Ok(text),
        Some(Value::String(_)) => Err(format!("the {what}'s `{field}` must not be empty")),
        None => Err(format!("the {what} has no `{field}` (or it is null)")),
        Some(_) => Err(format!("the {what}'s `{field}` must be a string")),
    }
}

/// An optional string field: absent and `null` are both `None`.
pub(crate) fn optional_string(
    what: &str,
    field: &str,
    value: Option<Value>,
) -> Result<Option<String>, String> {
    match value {
        None => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(_) => Err(format!("the {what}'s `{field}` must be a string or null")),
    }
}

/// `json` without its top-level members named `key`; every other byte stays as it was
/// (member order, spacing, escapes). `json` must be a valid JSON object.
pub(crate) fn without_top_level_key<'a>(json: &'a str, key: &str) -> Result<Cow<'a, str>, String> {
    let members = top_level_members(json)?;
    if !members.iter().any(|member| member.key.as_deref() == Some(key)) {
        return Ok(Cow::Borrowed(json));
    }
    let (Some(first), Some(last)) = (members.first(), members.last()) else {
        return Ok(Cow::Borrowed(json));
    };
    let mut out = String::with_capacity(json.len());
    out.push_str(&json[..first.start]);
    let mut wrote_any = false;
    for (index, member) in members.iter().enumerate() {
        if member.key.as_deref() == Some(key) {
            continue;
        }
        if wrote_any {
            // The separator (comma and spacing) that preceded this member originally.
            out.push_str(&json[members[index - 1].end..member.start]);
        }
        out.push_str(&json[member.start..member.end]);
        wrote_any = true;
    }
    out.push_str(&json[last.end..]);
    Ok(Cow::Owned(out))
}

#[derive(Debug)]
struct Member {
    /// The decoded key (`None` if it cannot be decoded, e.g. a lone surrogate escape).
    key: Option<String>,
    /// Byte offset of the key's opening quote.
    start: usize,
    /// Byte offset just after the value.
    end: usize,
}

/// The byte spans of the members of a JSON object text.
fn top_level_members(json: &str) -> Result<Vec<Member>, String> {
    let invalid = || "the JSON object is not valid".to_owned();
    let bytes = json.as_bytes();
    let mut pos = skip_whitespace(bytes, 0);
    if bytes.get(pos) != Some(&b'{') {
        return Err(invalid());
    }
    pos = skip_whitespace(bytes, pos + 1);
    let mut members = Vec::new();
    if bytes.get(pos) == Some(&b'}') {
        return Ok(members);
    }
    loop {
        let start = pos;
        let key_end = string_end(bytes, pos).ok_or_else(invalid)?;
        let key = serde_json::from_str::<String>(&json[start..key_end]).ok();
        pos = skip_whitespace(bytes, key_end);
        if bytes.get(pos) != Some(&b':') {
            return Err(invalid());
        }
        pos = skip_whitespace(bytes, pos + 1);
        let mut values = serde_json::Deserializer::from_str(&json[pos..]).into_iter::<IgnoredAny>();
        match values.next() {
            Some(Ok(_)) => {}
            _ => return Err(invalid()),
        }
        let end = pos + values.byte_offset();
        members.push(Member { key, start, end });
        pos = skip_whitespace(bytes, end);
        match bytes.get(pos) {
            Some(b',') => pos = skip_whitespace(bytes, pos + 1),
            Some(b'}') => return Ok(members),
            _ => return Err(invalid()),
        }
    }
}

fn skip_whitespace(bytes: &[u8], mut pos: usize) -> usize {
    while matches!(bytes.get(pos), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        pos += 1;
    }
    pos
}

/// The offset just after the JSON string starting at `pos` (at its opening quote).
fn string_end(bytes: &[u8], pos: usize) -> Option<usize> {
    if bytes.get(pos) != Some(&b'"') {
        return None;
    }
    let mut index = pos + 1;
    loop {
        match bytes.get(index)? {
            b'"' => return Some(index + 1),
            b'\\' => index += 2,
            _ => index += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::without_top_level_key;

    #[test]
    fn removes_only_the_named_top_level_member_and_keeps_every_other_byte() {
        let cases = [
            (r#"{"a":1}"#, r#"{"a":1}"#),
            (r#"{"items":{"data":[]},"a":1}"#, r#"{"a":1}"#),
            (r#"{"a":1, "items":{"data":[]}, "b" : "x"}"#, r#"{"a":1, "b" : "x"}"#),
            (r#"{ "a":1 ,"items":[1,2] }"#, r#"{ "a":1 }"#),
            (r#"{"items":null}"#, r#"{}"#),
            ("{ \"items\" : 1 }", "{  }"),
            (r#"{"items":1,"items":2,"a":{"items":3}}"#, r#"{"a":{"items":3}}"#),
            (r#"{"\u0069tems":1,"b":"\"items\""}"#, r#"{"b":"\"items\""}"#),
            (r#"{"x":"\ud800","items":true}"#, r#"{"x":"\ud800"}"#),
            (r#"{"n":-1.5e3,"items":"}","m":[{"a":"]"}]}"#, r#"{"n":-1.5e3,"m":[{"a":"]"}]}"#),
        ];
        for (input, expected) in cases {
            assert_eq!(without_top_level_key(input, "items").unwrap(), expected, "{input}");
        }
    }
}
