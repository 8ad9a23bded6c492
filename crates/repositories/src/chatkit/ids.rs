//! Ids of new ChatKit objects, as `chatkit.store.Store`'s generators make them.

use std::str::FromStr;

use crate::RepoError;

/// `chatkit.store.StoreItemType`: what an id is generated for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StoreItemType {
    Thread,
    Message,
    ToolCall,
    Task,
    Workflow,
    Attachment,
    SdkHiddenContext,
}

impl StoreItemType {
    pub const ALL: [Self; 7] = [
        Self::Thread,
        Self::Message,
        Self::ToolCall,
        Self::Task,
        Self::Workflow,
        Self::Attachment,
        Self::SdkHiddenContext,
    ];

    /// The SDK's name for it (`"tool_call"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Thread => "thread",
            Self::Message => "message",
            Self::ToolCall => "tool_call",
            Self::Task => "task",
            Self::Workflow => "workflow",
            Self::Attachment => "attachment",
            Self::SdkHiddenContext => "sdk_hidden_context",
        }
    }

    /// The SDK's id prefix (`thr`, `msg`, `tc`, `tsk`, `wf`, `atc`, `shcx`).
    pub fn prefix(self) -> &'static str {
        match self {
            Self::Thread => "thr",
            Self::Message => "msg",
            Self::ToolCall => "tc",
            Self::Task => "tsk",
            Self::Workflow => "wf",
            Self::Attachment => "atc",
            Self::SdkHiddenContext => "shcx",
        }
    }
}

impl FromStr for StoreItemType {
    type Err = RepoError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.as_str() == text)
            .ok_or_else(|| RepoError::Invalid(format!("unknown store item type `{text}`")))
    }
}

/// `<prefix>_` and 32 lowercase hex digits: 128 random bits from the operating system's
/// generator. The SDK uses 8 hex digits (32 bits), which collide in large tables; the prefix
/// is the same, and ids stay opaque strings either way.
pub fn default_generate_id(item_type: StoreItemType) -> String {
    format!("{}_{:032x}", item_type.prefix(), random_u128())
}

/// 128 random bits. A v4 UUID carries 122 (all but its version bits 76..80 and variant bits
/// 62..64); those six come from a second UUID's random bits 84..88 and 70..72.
fn random_u128() -> u128 {
    const FIXED: u128 = (0xF << 76) | (0x3 << 62);
    let first = uuid::Uuid::new_v4().as_u128();
    let second = uuid::Uuid::new_v4().as_u128();
    (first & !FIXED) | ((second >> 8) & FIXED)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn generated_ids_carry_128_random_bits() {
        let (mut ones, mut zeros) = (0u128, 0u128);
        for _ in 0..2000 {
            let bits = random_u128();
            ones |= bits;
            zeros |= !bits;
        }
        assert_eq!(ones, u128::MAX, "some bit is never 1");
        assert_eq!(zeros, u128::MAX, "some bit is never 0");
    }

    #[test]
    fn generated_ids_keep_the_sdk_prefixes() {
        for kind in StoreItemType::ALL {
            let id = default_generate_id(kind);
            let (prefix, random) = id.split_once('_').unwrap();
            assert_eq!(prefix, kind.prefix());
            assert_eq!(random.len(), 32);
            assert!(random.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
            assert_eq!(kind.as_str().parse::<StoreItemType>().unwrap(), kind);
        }
    }
}
