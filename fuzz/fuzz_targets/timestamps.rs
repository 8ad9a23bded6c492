//! ISO 8601 timestamps as ChatKit objects carry them (`created_at`), read as Python would.
#![no_main]

use chrono::Datelike;
use libfuzzer_sys::fuzz_target;
use repositories::chatkit::parse_iso_timestamp;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // Within Python's years in UTC (an offset can carry an instant out of them).
    if let Ok(at) = parse_iso_timestamp(text)
        && (1..=9999).contains(&at.year())
    {
        // What it reads, written back out, reads as the same instant.
        let written = at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
        let again = parse_iso_timestamp(&written)
            .unwrap_or_else(|reason| panic!("{text:?} read as {written}, which fails: {reason}"));
        assert_eq!(again, at, "{text:?}");
    }
});
