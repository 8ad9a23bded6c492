//! Partial runs (`--only`) update `BENCHMARKS.md` in place: the sections they measured replace
//! their namesakes, every other section stays as it was, and the header says which sections
//! were measured later, and when. The closing "What changed" part, which is written from the
//! code rather than measured, is replaced by the running version's, so it names every change
//! the figures include.
//!
//! A section is a `## ` heading and everything up to the next one. Each carries its key (the
//! name `--only` takes) in an HTML comment under its heading, which renders as nothing, so a
//! heading may be reworded without losing track of its section; files written before the
//! comments existed are matched by their headings' known beginnings.

use std::fmt::Write as _;

/// The key of the closing part, which `--only` cannot name (every run writes it).
pub(crate) const CHANGES: &str = "changes";

/// Headings of files written before sections carried their keys.
const KNOWN_HEADINGS: [(&str, &str); 12] = [
    ("turns", "## Turn throughput"),
    ("chatkit", "## ChatKit turns"),
    ("growth", "## Turns as histories grow"),
    ("sqlite", "## The embedded SQLite build"),
    ("reads", "## Session reads cost"),
    ("chats", "## Chat lists cost"),
    ("tags", "## Tag-filtered chat lists"),
    ("threads", "## ChatKit thread items"),
    ("data", "## Export, import"),
    ("search", "## Search next to"),
    ("memory", "## Advanced agent memory"),
    (CHANGES, "## What changed"),
];

/// Whether `--only` knows section `key`.
pub(crate) fn is_section(key: &str) -> bool {
    key != CHANGES && KNOWN_HEADINGS.iter().any(|(known, _)| *known == key)
}

/// The line under the header that lists sections measured after the full run.
const LATER_PREFIX: &str = "Measured on their own since:";

/// One `## ` section: its key, if known, and its text from the heading on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Section {
    pub(crate) key: Option<String>,
    pub(crate) text: String,
}

fn marker(key: &str) -> String {
    format!("<!-- section: {key} -->")
}

/// A section's text with its key's comment under the heading, once.
pub(crate) fn keyed(key: &str, text: &str) -> String {
    let text = text.trim_matches('\n');
    let (heading, rest) = text.split_once('\n').unwrap_or((text, ""));
    let rest = rest.trim_start_matches('\n');
    let rest = rest.strip_prefix(marker(key).as_str()).unwrap_or(rest).trim_start_matches('\n');
    format!("{heading}\n{}\n\n{rest}\n", marker(key))
}

/// The key a section's text carries, or that its heading is known by.
fn key_of(text: &str) -> Option<String> {
    let heading = text.lines().next().unwrap_or_default();
    let from_marker = text.lines().skip(1).find_map(|line| {
        line.trim().strip_prefix("<!-- section: ")?.strip_suffix(" -->").map(str::to_owned)
    });
    from_marker.or_else(|| {
        KNOWN_HEADINGS
            .iter()
            .find(|(_, known)| heading.starts_with(known))
            .map(|(key, _)| (*key).to_owned())
    })
}

/// A document's header (everything before its first `## `) and its sections.
pub(crate) fn split(document: &str) -> (String, Vec<Section>) {
    let mut header = String::new();
    let mut sections: Vec<String> = Vec::new();
    for line in document.split_inclusive('\n') {
        if line.starts_with("## ") {
            sections.push(String::new());
        }
        sections.last_mut().unwrap_or(&mut header).push_str(line);
    }
    let sections = sections.into_iter().map(|text| Section { key: key_of(&text), text }).collect();
    (header, sections)
}

/// Joins a header and sections, one blank line between parts.
pub(crate) fn join(header: &str, sections: &[Section]) -> String {
    let mut document = format!("{}\n", header.trim_end_matches('\n'));
    for section in sections {
        let _ = write!(document, "\n{}\n", section.text.trim_matches('\n'));
    }
    document
}

/// `existing` with `fresh`'s sections (keyed, in `--only`'s measuring order) in place of their
/// namesakes; sections it did not have go before the closing part, in the order given. The
/// header's line of later measurements names them with `when` (and `command`), replacing what
/// it said of them before; the sections themselves say so under their headings. `changes`,
/// when given, replaces the closing part as it is (it was not measured).
pub(crate) fn splice(
    existing: &str,
    fresh: &[Section],
    changes: Option<&Section>,
    when: &str,
    command: &str,
) -> String {
    let (header, mut sections) = split(existing);
    if let Some(changes) = changes {
        let replacement =
            Section { key: Some(CHANGES.to_owned()), text: keyed(CHANGES, &changes.text) };
        match sections.iter().position(|old| old.key.as_deref() == Some(CHANGES)) {
            Some(index) => sections[index] = replacement,
            None => sections.push(replacement),
        }
    }
    for section in fresh {
        let key = section.key.as_deref().unwrap_or_default();
        let text = with_note(&keyed(key, &section.text), when, command);
        let replacement = Section { key: section.key.clone(), text };
        match sections.iter().position(|old| old.key == section.key) {
            Some(index) => sections[index] = replacement,
            None => {
                let end = sections
                    .iter()
                    .position(|old| old.key.as_deref() == Some(CHANGES))
                    .unwrap_or(sections.len());
                sections.insert(end, replacement);
            }
        }
    }
    let keys: Vec<&str> = fresh.iter().filter_map(|section| section.key.as_deref()).collect();
    join(&later_line(&header, &keys, when), &sections)
}

/// The note a re-measured section carries under its heading (and key).
fn with_note(text: &str, when: &str, command: &str) -> String {
    let mut lines = text.splitn(3, '\n');
    let (heading, key_line, rest) =
        (lines.next().unwrap_or_default(), lines.next().unwrap_or_default(), lines.next());
    let rest = rest.unwrap_or_default().trim_start_matches('\n');
    format!(
        "{heading}\n{key_line}\n\n*Measured on its own on {when} (`{command}`); tables without \
         such a note are from the full run the header dates.*\n\n{rest}"
    )
}

/// `header` with its line of later measurements naming `keys` at `when`.
fn later_line(header: &str, keys: &[&str], when: &str) -> String {
    let mut entries: Vec<(String, String)> = Vec::new();
    let mut kept = Vec::new();
    for line in header.lines() {
        match line.strip_prefix(LATER_PREFIX) {
            Some(list) => {
                for entry in list.trim().trim_end_matches('.').split("; ") {
                    if let Some((key, date)) = entry.split_once(" on ") {
                        entries.push((key.trim_matches('`').to_owned(), date.to_owned()));
                    }
                }
            }
            None => kept.push(line),
        }
    }
    entries.retain(|(key, _)| !keys.contains(&key.as_str()));
    entries.extend(keys.iter().map(|key| ((*key).to_owned(), when.to_owned())));
    let list: Vec<String> =
        entries.iter().map(|(key, date)| format!("`{key}` on {date}")).collect();
    if list.is_empty() {
        return header.to_owned();
    }
    let line = format!("{LATER_PREFIX} {}.", list.join("; "));
    // Right under the "Written by" line, which dates the full run.
    let mut header = String::new();
    let mut placed = false;
    for line_text in kept {
        let _ = writeln!(header, "{line_text}");
        if !placed && line_text.starts_with("Written by") {
            let _ = writeln!(header, "\n{line}");
            placed = true;
        }
    }
    if !placed {
        let _ = writeln!(header, "\n{line}");
    }
    // The blank line that set off the line it replaced stays too: one blank line between parts.
    while header.contains("\n\n\n") {
        header = header.replace("\n\n\n", "\n\n");
    }
    header
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXISTING: &str = "# Benchmarks\n\nWritten by `chatstore-bench` on 2026-11-22 10:04 UTC on 2 cores.\n\nReproduce with `just bench`.\n\n\
        ## Turn throughput on PostgreSQL\n\nold turns\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n\
        ## Turns as histories grow\n\nold growth\n\n\
        ## Session reads cost the same\n\nold reads\n\n\
        ## What changed, and what it gained\n\n- a change\n";

    fn fresh(key: &str, text: &str) -> Section {
        Section { key: Some(key.to_owned()), text: text.to_owned() }
    }

    #[test]
    fn a_partial_run_replaces_only_its_sections_and_keeps_their_order() {
        let growth = fresh("growth", "\n## Turns as 10 million items grow\n\nnew growth\n");
        let changes =
            fresh(CHANGES, "## What changed, and what it gained\n\n- a change\n- another\n");
        let spliced = splice(
            EXISTING,
            &[growth],
            Some(&changes),
            "2026-11-30 21:40 UTC",
            "chatstore-bench --only growth",
        );
        let (header, sections) = split(&spliced);
        let keys: Vec<_> = sections.iter().map(|s| s.key.clone().unwrap_or_default()).collect();
        assert_eq!(keys, ["turns", "growth", "reads", "changes"]);
        assert!(sections[0].text.contains("old turns") && sections[0].text.contains("| 1 | 2 |"));
        assert!(
            sections[1]
                .text
                .starts_with("## Turns as 10 million items grow\n<!-- section: growth -->\n")
        );
        assert!(sections[1].text.contains("new growth") && !spliced.contains("old growth"));
        assert!(sections[1].text.contains(
            "*Measured on its own on 2026-11-30 21:40 UTC (`chatstore-bench --only growth`)"
        ));
        assert!(sections[2].text.contains("old reads"));
        assert!(sections[3].text.contains("- a change\n- another"), "the code's changes");
        assert!(!sections[3].text.contains("*Measured on its own"));
        assert!(header.contains("Written by `chatstore-bench` on 2026-11-22 10:04 UTC"));
        assert!(header.contains("Measured on their own since: `growth` on 2026-11-30 21:40 UTC."));
    }

    #[test]
    fn a_second_partial_run_updates_the_header_line_and_finds_sections_by_their_keys() {
        let first = splice(
            EXISTING,
            &[fresh("growth", "## Renamed growth\n\ngrowth one\n")],
            None,
            "2026-11-30 21:40 UTC",
            "x",
        );
        let second = splice(
            &first,
            &[
                fresh("turns", "## Turn throughput on PostgreSQL\n\nnew turns\n"),
                fresh("growth", "## Renamed again\n\ngrowth two\n"),
            ],
            None,
            "2026-12-01 08:00 UTC",
            "y",
        );
        assert!(second.contains(
            "Measured on their own since: `turns` on 2026-12-01 08:00 UTC; `growth` on 2026-12-01 08:00 UTC."
        ));
        assert_eq!(second.matches("Measured on their own since").count(), 1);
        assert!(!second.contains("\n\n\n"), "one blank line between parts: {second}");
        assert!(!second.contains("growth one") && !second.contains("old turns"));
        assert_eq!(second.matches("## ").count(), 4, "{second}");
        assert_eq!(second.matches("<!-- section: growth -->").count(), 1);
        assert_eq!(second.matches("*Measured on its own").count(), 2);
        assert!(second.find("## Renamed again") < second.find("## Session reads"));
    }

    #[test]
    fn a_section_the_file_lacked_goes_before_the_closing_part() {
        let spliced = splice(
            EXISTING,
            &[fresh("memory", "## Advanced agent memory\n\nmem\n")],
            None,
            "d",
            "c",
        );
        let (_, sections) = split(&spliced);
        let keys: Vec<_> = sections.iter().map(|s| s.key.clone().unwrap_or_default()).collect();
        assert_eq!(keys, ["turns", "growth", "reads", "memory", "changes"]);
    }

    #[test]
    fn a_run_that_measured_nothing_changes_nothing() {
        assert_eq!(splice(EXISTING, &[], None, "d", "c"), EXISTING);
        assert!(is_section("growth") && !is_section("changes") && !is_section("grwoth"));
    }

    #[test]
    fn joining_what_was_split_changes_nothing() {
        let (header, sections) = split(EXISTING);
        assert_eq!(join(&header, &sections), EXISTING);
    }
}
