//! How deep stored JSON may nest, checked on its exact text.

/// The most arrays and objects a stored JSON value may nest: serde_json's own limit (it reads
/// 127 levels and refuses the 128th), which whatever parses stored JSON meets. A
/// value nested deeper could be stored but never read back by serde_json, nor by the Python
/// client's `json.loads` once deep enough, so one request would poison a conversation.
pub const MAX_JSON_NESTING: usize = 127;

/// Whether valid JSON `json` nests more than [`MAX_JSON_NESTING`] arrays and objects. It
/// counts brackets outside strings, so the exact text kept for storage is never parsed into
/// values or written again.
pub fn nests_too_deep(json: &[u8]) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &byte in json {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_JSON_NESTING {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn too_deep(text: &str) -> bool {
        nests_too_deep(text.as_bytes())
    }

    fn nested(levels: usize) -> String {
        format!("{}{}", "[".repeat(levels), "]".repeat(levels))
    }

    #[test]
    fn nesting_is_counted_as_serde_json_counts_it() {
        for levels in [1, 2, MAX_JSON_NESTING - 1, MAX_JSON_NESTING, MAX_JSON_NESTING + 1, 5000] {
            let text = nested(levels);
            let serde_reads_it = serde_json::from_str::<serde_json::Value>(&text).is_ok();
            assert_eq!(!too_deep(&text), serde_reads_it, "{levels} levels");
        }
        assert!(!too_deep(&nested(MAX_JSON_NESTING)));
        assert!(too_deep(&nested(MAX_JSON_NESTING + 1)));
    }

    #[test]
    fn brackets_in_strings_and_escapes_do_not_count() {
        let deep_looking = format!(r#"{{"a": "{}", "b": "\"[{{", "c": [1]}}"#, "[{".repeat(300));
        assert!(!too_deep(&deep_looking));
        let escaped_backslash = format!(r#"{{"a": "\\\\", "b": {}}}"#, nested(MAX_JSON_NESTING));
        assert!(too_deep(&escaped_backslash), "the string ends before the brackets");
        let objects =
            format!("{}1{}", r#"{"k":"#.repeat(MAX_JSON_NESTING), "}".repeat(MAX_JSON_NESTING));
        assert!(!too_deep(&objects));
        assert!(too_deep(&format!("[{objects}]")));
    }
}
