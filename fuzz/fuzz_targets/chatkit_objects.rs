//! ChatKit requests (`POST /chatkit` bodies), and threads, items and attachments as the store
//! receives them: JSON text checked and its fields read out, every other byte kept.
#![no_main]

use chatkit_server::ChatKitRequest;
use chrono::Datelike;
use libfuzzer_sys::fuzz_target;
use repositories::chatkit::{StoredAttachment, StoredItem, StoredThread};

fuzz_target!(|data: &[u8]| {
    let _ = ChatKitRequest::parse(data);
    let Ok(json) = std::str::from_utf8(data) else { return };
    if let Ok(thread) = StoredThread::parse(json) {
        assert!(!thread.id.is_empty() && !thread.id.contains('\0'));
        assert!((1..=9999).contains(&thread.created_at.year()));
        serde_json::from_str::<serde_json::Value>(&thread.json).expect("stored JSON parses");
    }
    if let Ok(item) = StoredItem::parse("thr_1", json) {
        assert!(!item.id.is_empty() && !item.id.contains('\0'));
        assert_eq!(item.thread_id, "thr_1");
        assert!((1..=9999).contains(&item.created_at.year()));
    }
    if let Ok(attachment) = StoredAttachment::parse(json) {
        assert!(!attachment.id.is_empty() && !attachment.id.contains('\0'));
    }
});
