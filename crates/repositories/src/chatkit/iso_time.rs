//! ISO 8601 timestamps as Python's `datetime.fromisoformat` reads them, normalised to UTC for
//! ordering.
//!
//! Accepted (the forms `fromisoformat` documents; Python 3.11 also takes a few oddities, such
//! as a fraction after the minutes, which are refused here):
//!
//! - date: `YYYY-MM-DD`, `YYYYMMDD`, `YYYY-Www`, `YYYY-Www-D`, `YYYYWww`, `YYYYWwwD`
//!   (years 0001 to 9999);
//! - optionally one separator character (`T`, a space, ...) and a time: `HH`, `HH:MM`,
//!   `HH:MM:SS`, `HHMM`, `HHMMSS`, the seconds optionally followed by `.` or `,` and one or
//!   more digits (beyond microseconds they are dropped, as Python does);
//! - optionally after the time, an offset: `Z`, or `+`/`-` then `HH`, `HH:MM`, `HHMM`,
//!   `HH:MM:SS[.ffffff]` or `HHMMSS[.ffffff]`, strictly within 24 hours.
//!
//! A value without an offset (a naive one, which is what the ChatKit SDK writes) is taken to be
//! UTC.

use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, NaiveTime, Utc, Weekday};

/// The instant `text` denotes, in UTC at microsecond precision; `Err` with a reason when it is
/// not an ISO 8601 timestamp that Python would read.
pub fn parse_iso_timestamp(text: &str) -> Result<DateTime<Utc>, String> {
    let bytes = text.as_bytes();
    let (date, date_len) = parse_date(bytes).ok_or("not an ISO 8601 date")?;
    let rest = &text[date_len..];
    let Some(separator) = rest.chars().next() else {
        return to_utc(date.and_time(NaiveTime::MIN), Duration::zero());
    };
    let time_text = &rest[separator.len_utf8()..];
    let mut cursor = Cursor { bytes: time_text.as_bytes(), pos: 0 };
    let (time, micros) = parse_time(&mut cursor).ok_or("not an ISO 8601 time")?;
    let offset = match cursor.peek() {
        None => Duration::zero(),
        Some(b'Z') => {
            cursor.pos += 1;
            Duration::zero()
        }
        Some(sign @ (b'+' | b'-')) => {
            cursor.pos += 1;
            let magnitude = parse_offset(&mut cursor).ok_or("not an ISO 8601 UTC offset")?;
            if magnitude >= Duration::hours(24) {
                return Err("the UTC offset must be strictly within 24 hours".into());
            }
            if sign == b'-' { -magnitude } else { magnitude }
        }
        Some(_) => return Err("unexpected text after the time".into()),
    };
    if cursor.pos != cursor.bytes.len() {
        return Err("unexpected text after the UTC offset".into());
    }
    let local = date.and_time(time) + Duration::microseconds(micros);
    to_utc(local, offset)
}

fn to_utc(local: NaiveDateTime, offset: Duration) -> Result<DateTime<Utc>, String> {
    let utc = local.checked_sub_signed(offset).ok_or("timestamp out of range")?;
    Ok(utc.and_utc())
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    /// Exactly `count` ASCII digits, as a number.
    fn digits(&mut self, count: usize) -> Option<u32> {
        let slice = self.bytes.get(self.pos..self.pos + count)?;
        let mut value = 0u32;
        for byte in slice {
            if !byte.is_ascii_digit() {
                return None;
            }
            value = value * 10 + u32::from(byte - b'0');
        }
        self.pos += count;
        Some(value)
    }

    fn eat(&mut self, byte: u8) -> bool {
        if self.peek() == Some(byte) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn at_digit(&self) -> bool {
        self.peek().is_some_and(|byte| byte.is_ascii_digit())
    }

    /// `.` or `,` and one or more digits: microseconds (later digits are dropped).
    fn fraction(&mut self) -> Option<i64> {
        if !(self.eat(b'.') || self.eat(b',')) {
            return Some(0);
        }
        let start = self.pos;
        let mut micros = 0i64;
        while let Some(byte) = self.peek().filter(u8::is_ascii_digit) {
            let index = self.pos - start;
            if index < 6 {
                micros = micros * 10 + i64::from(byte - b'0');
            }
            self.pos += 1;
        }
        let count = self.pos - start;
        if count == 0 {
            return None;
        }
        for _ in count..6 {
            micros *= 10;
        }
        Some(micros)
    }
}

/// The date and how many bytes it took.
fn parse_date(bytes: &[u8]) -> Option<(NaiveDate, usize)> {
    let mut cursor = Cursor { bytes, pos: 0 };
    let year = cursor.digits(4)?;
    if year == 0 {
        return None;
    }
    let year = i32::try_from(year).ok()?;
    let extended = cursor.eat(b'-');
    if cursor.eat(b'W') {
        let week = cursor.digits(2)?;
        let day = if extended {
            if cursor.eat(b'-') { cursor.digits(1)? } else { 1 }
        } else if cursor.at_digit() {
            cursor.digits(1)?
        } else {
            1
        };
        let weekday = match day {
            1 => Weekday::Mon,
            2 => Weekday::Tue,
            3 => Weekday::Wed,
            4 => Weekday::Thu,
            5 => Weekday::Fri,
            6 => Weekday::Sat,
            7 => Weekday::Sun,
            _ => return None,
        };
        let date = NaiveDate::from_isoywd_opt(year, week, weekday)?;
        return Some((date, cursor.pos));
    }
    let month = cursor.digits(2)?;
    if extended && !cursor.eat(b'-') {
        return None;
    }
    let day = cursor.digits(2)?;
    Some((NaiveDate::from_ymd_opt(year, month, day)?, cursor.pos))
}

/// The time of day and its microseconds.
fn parse_time(cursor: &mut Cursor<'_>) -> Option<(NaiveTime, i64)> {
    let hour = cursor.digits(2)?;
    let mut minute = 0;
    let mut second = 0;
    let mut micros = 0;
    if cursor.eat(b':') {
        minute = cursor.digits(2)?;
        if cursor.eat(b':') {
            second = cursor.digits(2)?;
            micros = cursor.fraction()?;
        }
    } else if cursor.at_digit() {
        minute = cursor.digits(2)?;
        if cursor.at_digit() {
            second = cursor.digits(2)?;
            micros = cursor.fraction()?;
        }
    }
    // `from_hms_opt` refuses hour 24 and leap seconds, as Python does.
    Some((NaiveTime::from_hms_opt(hour, minute, second)?, micros))
}

/// The magnitude of a UTC offset (after its sign).
fn parse_offset(cursor: &mut Cursor<'_>) -> Option<Duration> {
    let hours = cursor.digits(2)?;
    let mut minutes = 0;
    let mut seconds = 0;
    let mut micros = 0;
    if cursor.eat(b':') {
        minutes = cursor.digits(2)?;
        if cursor.eat(b':') {
            seconds = cursor.digits(2)?;
            micros = cursor.fraction()?;
        }
    } else if cursor.at_digit() {
        minutes = cursor.digits(2)?;
        if cursor.at_digit() {
            seconds = cursor.digits(2)?;
            micros = cursor.fraction()?;
        }
    }
    if minutes > 59 || seconds > 59 {
        return None;
    }
    Some(
        Duration::hours(i64::from(hours))
            + Duration::minutes(i64::from(minutes))
            + Duration::seconds(i64::from(seconds))
            + Duration::microseconds(micros),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::parse_iso_timestamp;

    fn utc(text: &str) -> String {
        parse_iso_timestamp(text)
            .unwrap_or_else(|err| panic!("{text}: {err}"))
            .format("%Y-%m-%dT%H:%M:%S%.6f")
            .to_string()
    }

    /// Expected values are Python 3.11's `datetime.fromisoformat(text)`, converted to UTC
    /// (naive values taken as UTC).
    #[test]
    fn reads_what_python_reads() {
        let cases = [
            ("2025-10-06T12:00:00.123456", "2025-10-06T12:00:00.123456"),
            ("2025-10-06T12:00:00", "2025-10-06T12:00:00.000000"),
            ("2025-10-06T12:00:00Z", "2025-10-06T12:00:00.000000"),
            ("2025-10-06 12:00:00", "2025-10-06T12:00:00.000000"),
            ("2025-10-06", "2025-10-06T00:00:00.000000"),
            ("20251006", "2025-10-06T00:00:00.000000"),
            ("2025-10-06T12", "2025-10-06T12:00:00.000000"),
            ("2025-10-06T12:00", "2025-10-06T12:00:00.000000"),
            ("2025-10-06T12:00:00.1", "2025-10-06T12:00:00.100000"),
            ("2025-10-06T12:00:00.1234567", "2025-10-06T12:00:00.123456"),
            ("2025-10-06T12:00:00,5", "2025-10-06T12:00:00.500000"),
            ("2025-10-06t12:00:00", "2025-10-06T12:00:00.000000"),
            ("20251006T120000", "2025-10-06T12:00:00.000000"),
            ("2025-10-06T1200", "2025-10-06T12:00:00.000000"),
            ("2025-10-06T120000.5", "2025-10-06T12:00:00.500000"),
            ("2025-10-06T12:00:00+0530", "2025-10-06T06:30:00.000000"),
            ("2025-10-06T12:00:00+05", "2025-10-06T07:00:00.000000"),
            ("2025-10-06T12:00:00-05:30:15", "2025-10-06T17:30:15.000000"),
            ("2025-10-06T12:00:00.5+05:30", "2025-10-06T06:30:00.500000"),
            ("2025-10-06T12:00:00+05:30:15.123", "2025-10-06T06:29:44.877000"),
            ("2025-10-06T12:00:00+23:59", "2025-10-05T12:01:00.000000"),
            ("2025-10-06T12:00:00-00:00", "2025-10-06T12:00:00.000000"),
            ("2025-10-06T12:00:00.123+0000", "2025-10-06T12:00:00.123000"),
            ("2025-10-06T120000Z", "2025-10-06T12:00:00.000000"),
            ("2025-10-06T12Z", "2025-10-06T12:00:00.000000"),
            ("2025-10-06T12+01", "2025-10-06T11:00:00.000000"),
            ("2025-W41", "2025-10-06T00:00:00.000000"),
            ("2025W411", "2025-10-06T00:00:00.000000"),
            ("2025-W41-7", "2025-10-12T00:00:00.000000"),
            ("2026-W53-1", "2026-12-28T00:00:00.000000"),
            ("2025-10-06é12:00", "2025-10-06T12:00:00.000000"),
            ("0001-01-01T00:00:00", "0001-01-01T00:00:00.000000"),
            ("2025-10-06T12:00:00.123456789Z", "2025-10-06T12:00:00.123456"),
        ];
        for (text, expected) in cases {
            assert_eq!(utc(text), expected, "{text}");
        }
    }

    #[test]
    fn refuses_what_python_refuses() {
        let cases = [
            "",
            "now",
            "2025-10",
            "2025-10-06T",
            "2025-10-06T24:00:00",
            "2025-10-06T12:00:60",
            "2025-02-30T00:00:00",
            "2025-13-01",
            "2025-00-01",
            "0000-01-01",
            "2025-279",
            "2025-1006",
            "202510-06",
            "2025-W53-1",
            "2025-10-06T12:00:00z",
            "2025-10-06T12:00:00 ",
            "2025-10-06T12:00:00+24:00",
            "2025-10-06T12:00:00.",
            "+2025-10-06",
            "2025-10-06T12:00:00Z+01:00",
            "2025-10-06T12:00:00+5",
            "2025-10-06T12:00:00+05:3",
            "2025-10-06T1",
            "2025-10-06T123",
            "2025-10-06T12:00:0",
            "2025-10-06 T12:00",
            "２０２５-10-06",
            "1760000000",
        ];
        for text in cases {
            assert!(parse_iso_timestamp(text).is_err(), "{text:?} was accepted");
        }
    }
}
