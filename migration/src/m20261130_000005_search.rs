//! Full-text search over a user's conversations (`GET /search`).
//!
//! `search_entries` holds one row per searchable text: a chat's or a ChatKit thread's title
//! (`item_key` empty), a session item (`item_key` its position) or a ChatKit thread item
//! (`item_key` its id), with the text taken out of it. Database triggers on the source tables
//! keep it in step, inside the statement that writes the source rows: every write path, the
//! ones of today and any later statement that inserts, updates or deletes those rows
//! (including cascades from a deleted chat or thread), indexes without code of its own.
//!
//! - PostgreSQL: a `tsvector` column, generated from the text through the `chatstore_search`
//!   configuration (the `simple` dictionary, no stemming, after `unaccent`), with a GIN index.
//!   Session and thread items are indexed by statement-level triggers (one `INSERT ... SELECT`
//!   per statement, whatever the batch size); titles by row-level ones.
//! - SQLite: an FTS5 table (`unicode61`, diacritics removed) over `search_entries` as its
//!   external content, written by the same triggers.
//!
//! `search_state.enabled` (one row) switches indexing off: the triggers then add nothing. The
//! server writes it at start from `search.enabled`, emptying or rebuilding the index when it
//! changes (`repositories::Search::configure`).
//!
//! Entries have no foreign key (their parent is a chat or a thread): the triggers delete them
//! with their source rows. Each carries `user_id`, for erasure and export.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

/// Texts longer than this many characters are indexed up to it: PostgreSQL refuses a
/// `tsvector` over 1 MB, and a write must never fail because of its search entry.
pub(crate) const MAX_INDEXED_CHARS: usize = 100_000;

/// What each source table contributes: `(table, kind, conversation column, item key
/// expression over the row alias `r`)`.
pub(crate) const ITEM_SOURCES: [(&str, &str, &str, &str, &str); 2] = [
    ("conversation_items", "session", "chat_id", "r.position::text", "CAST(r.position AS TEXT)"),
    ("chatkit_items", "thread", "thread_id", "r.item_id", "r.item_id"),
];
const TITLE_SOURCES: [(&str, &str, &str); 2] =
    [("chats", "session", "chat_id"), ("chatkit_threads", "thread", "thread_id")];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        let statements = match manager.get_database_backend() {
            DbBackend::Postgres => postgres_up(),
            _ => sqlite_up(),
        };
        for statement in statements {
            db.execute_unprepared(&statement).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        let postgres = manager.get_database_backend() == DbBackend::Postgres;
        let mut statements = Vec::new();
        for (table, _, _, _, _) in ITEM_SOURCES {
            for event in ["insert", "update", "delete"] {
                statements
                    .push(format!("DROP TRIGGER IF EXISTS search_{table}_{event} ON {table}"));
            }
        }
        for (table, _, _) in TITLE_SOURCES {
            for event in ["insert", "update", "delete"] {
                statements
                    .push(format!("DROP TRIGGER IF EXISTS search_{table}_{event} ON {table}"));
            }
        }
        if postgres {
            statements.push("DROP TABLE search_entries".into());
            for (table, _, _, _, _) in ITEM_SOURCES {
                for event in ["insert", "update", "delete"] {
                    statements.push(format!("DROP FUNCTION search_{table}_{event}()"));
                }
            }
            for (table, _, _) in TITLE_SOURCES {
                statements.push(format!("DROP FUNCTION search_{table}_title()"));
            }
            statements.extend(
                [
                    "DROP VIEW search_sources",
                    "DROP FUNCTION chatstore_search_text(text)",
                    "DROP FUNCTION chatstore_search_json(text)",
                    "DROP FUNCTION chatstore_search_enabled()",
                    "DROP TEXT SEARCH CONFIGURATION chatstore_search",
                    "DROP TABLE search_state",
                ]
                .map(String::from),
            );
        } else {
            // SQLite names triggers per schema, without `ON table`.
            statements = statements
                .into_iter()
                .map(|drop| drop.split(" ON ").next().unwrap_or_default().to_owned())
                .collect();
            statements.extend(
                [
                    "DROP VIEW search_sources",
                    "DROP TABLE search_fts",
                    "DROP TABLE search_entries",
                    "DROP TABLE search_state",
                ]
                .map(String::from),
            );
        }
        for statement in statements {
            db.execute_unprepared(&statement).await?;
        }
        Ok(())
    }
}

/// The state row both databases share.
const STATE_TABLE: &str = "\
CREATE TABLE search_state (
    only_row integer PRIMARY KEY CHECK (only_row = 1),
    enabled boolean NOT NULL
)";
const STATE_ROW: &str = "INSERT INTO search_state (only_row, enabled) VALUES (1, TRUE)";

/// The text helpers, as this migration wrote them (`LANGUAGE sql`; 000009 replaces them), with
/// `CREATE OR REPLACE` so that 000009's `down` can put them back.
pub(crate) fn postgres_helper_functions() -> Vec<String> {
    let mut statements: Vec<String> = [
        "CREATE OR REPLACE FUNCTION chatstore_search_enabled() RETURNS boolean
         LANGUAGE sql STABLE AS $$ SELECT coalesce((SELECT enabled FROM search_state), TRUE) $$",
        // Items are stored as the exact text sent, which may escape NUL (`\u0000`) or a lone
        // surrogate: valid JSON that `jsonb` refuses. Those escapes (and only escapes: `\\`
        // pairs are set aside first) become spaces, so that no write fails on its index entry.
        r"CREATE OR REPLACE FUNCTION chatstore_search_json(data text) RETURNS jsonb
         LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
         SELECT CASE WHEN strpos(data, '\u') = 0 THEN data::jsonb
         ELSE replace(regexp_replace(replace(data, '\\', chr(1)),
                                     '\\u(0000|[dD][89a-fA-F][0-9a-fA-F]{2})', '\\u0020', 'g'),
                      chr(1), '\\')::jsonb
         END $$",
    ]
    .map(String::from)
    .to_vec();
    // A message's text: `content` when it is a string, else its `input_text` and
    // `output_text` parts, one a line.
    statements.push(format!(
        "CREATE OR REPLACE FUNCTION chatstore_search_text(data text) RETURNS text
         LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
         SELECT left(CASE jsonb_typeof(item -> 'content')
             WHEN 'string' THEN item ->> 'content'
             WHEN 'array' THEN (
                 SELECT string_agg(part ->> 'text', E'\\n' ORDER BY n)
                 FROM jsonb_array_elements(item -> 'content') WITH ORDINALITY AS parts (part, n)
                 WHERE part ->> 'type' IN ('input_text', 'output_text')
                   AND jsonb_typeof(part -> 'text') = 'string')
         END, {MAX_INDEXED_CHARS})
         FROM (SELECT chatstore_search_json(data) AS item) AS parsed $$"
    ));
    statements
}

pub(crate) fn postgres_up() -> Vec<String> {
    let mut statements: Vec<String> = [
        // Trusted since PostgreSQL 13: a database owner may create it.
        "CREATE EXTENSION IF NOT EXISTS unaccent",
        "CREATE TEXT SEARCH CONFIGURATION chatstore_search (COPY = simple)",
        // Words with letters lose their accents, then `simple` lower-cases them; no stemming,
        // so no language is favoured and a prefix of a word matches as typed.
        "ALTER TEXT SEARCH CONFIGURATION chatstore_search
         ALTER MAPPING FOR word, hword, hword_part, numword, numhword, hword_numpart
         WITH unaccent, simple",
        STATE_TABLE,
        STATE_ROW,
    ]
    .map(String::from)
    .to_vec();
    statements.extend(postgres_helper_functions());
    statements.push(
        "CREATE TABLE search_entries (
            id bigserial NOT NULL,
            user_id text NOT NULL,
            kind text NOT NULL,
            conversation_id text NOT NULL,
            item_key text NOT NULL,
            body text NOT NULL,
            created_at timestamptz NOT NULL,
            document tsvector GENERATED ALWAYS AS (to_tsvector('chatstore_search', body)) STORED,
            PRIMARY KEY (user_id, kind, conversation_id, item_key)
        )"
        .into(),
    );
    statements
        .push("CREATE INDEX search_entries_document ON search_entries USING gin (document)".into());
    statements.push(postgres_sources_view());
    statements.extend(postgres_item_trigger_functions());
    for (table, _, _, _, _) in ITEM_SOURCES {
        for (event, transition) in [
            ("insert", "NEW TABLE AS added"),
            ("delete", "OLD TABLE AS removed"),
            ("update", "OLD TABLE AS removed NEW TABLE AS added"),
        ] {
            statements.push(format!(
                "CREATE TRIGGER search_{table}_{event} AFTER {event} ON {table}
                 REFERENCING {transition} FOR EACH STATEMENT
                 EXECUTE FUNCTION search_{table}_{event}()"
            ));
        }
    }
    for (table, kind, conversation) in TITLE_SOURCES {
        statements.push(format!(
            "CREATE FUNCTION search_{table}_title() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
                 IF TG_OP <> 'INSERT' THEN
                     DELETE FROM search_entries
                     WHERE user_id = OLD.user_id AND kind = '{kind}'
                       AND conversation_id = OLD.{conversation} AND item_key = '';
                 END IF;
                 IF TG_OP <> 'DELETE' AND NEW.title <> '' AND chatstore_search_enabled() THEN
                     INSERT INTO search_entries
                         (user_id, kind, conversation_id, item_key, body, created_at)
                     VALUES (NEW.user_id, '{kind}', NEW.{conversation}, '',
                             left(NEW.title, {MAX_INDEXED_CHARS}), NEW.created_at)
                     ON CONFLICT (user_id, kind, conversation_id, item_key)
                     DO UPDATE SET body = excluded.body, created_at = excluded.created_at;
                 END IF;
                 RETURN NULL;
             END $$"
        ));
        // Row-level: the upserts that touch a chat on every append never name `title`, so
        // they fire nothing.
        let triggers = [
            ("insert", "INSERT", "NEW.title IS NOT NULL"),
            ("update", "UPDATE OF title", "OLD.title IS DISTINCT FROM NEW.title"),
            ("delete", "DELETE", "OLD.title IS NOT NULL"),
        ];
        for (name, event, when) in triggers {
            statements.push(format!(
                "CREATE TRIGGER search_{table}_{name} AFTER {event} ON {table}
                 FOR EACH ROW WHEN ({when}) EXECUTE FUNCTION search_{table}_title()"
            ));
        }
    }
    statements
}

/// The statement that removes the entries of the item rows in the transition table
/// `removed`, for the items of `kind` (columns as in [`ITEM_SOURCES`]).
pub(crate) fn item_entries_delete(kind: &str, conversation: &str, key: &str) -> String {
    format!(
        "DELETE FROM search_entries e USING removed r
         WHERE e.user_id = r.user_id AND e.kind = '{kind}'
           AND e.conversation_id = r.{conversation} AND e.item_key = {key};"
    )
}

/// The items' statement-level trigger functions, as this migration wrote them (000009
/// replaces the insert and update ones), with `CREATE OR REPLACE` so that 000009's `down` can
/// put them back.
pub(crate) fn postgres_item_trigger_functions() -> Vec<String> {
    let mut statements = Vec::new();
    for (table, kind, conversation, key, _) in ITEM_SOURCES {
        let insert = format!(
            "INSERT INTO search_entries (user_id, kind, conversation_id, item_key, body, created_at)
             SELECT user_id, '{kind}', conversation, item_key, body, created_at
             FROM (SELECT r.user_id, r.{conversation} AS conversation, {key} AS item_key,
                          chatstore_search_text(r.data) AS body, r.created_at
                   FROM added r) AS texts
             WHERE body <> ''
             ON CONFLICT (user_id, kind, conversation_id, item_key)
             DO UPDATE SET body = excluded.body, created_at = excluded.created_at;"
        );
        let delete = item_entries_delete(kind, conversation, key);
        let bodies = [
            ("insert", format!("IF chatstore_search_enabled() THEN {insert} END IF;")),
            ("delete", delete.clone()),
            ("update", format!("{delete} IF chatstore_search_enabled() THEN {insert} END IF;")),
        ];
        for (event, body) in bodies {
            statements.push(format!(
                "CREATE OR REPLACE FUNCTION search_{table}_{event}() RETURNS trigger
                 LANGUAGE plpgsql AS $$ BEGIN {body} RETURN NULL; END $$"
            ));
        }
    }
    statements
}

/// Every entry the sources call for, for rebuilding the index (PostgreSQL).
fn postgres_sources_view() -> String {
    let mut parts = Vec::new();
    for (table, kind, conversation, key, _) in ITEM_SOURCES {
        parts.push(format!(
            "SELECT user_id, '{kind}' AS kind, conversation_id, item_key, body, created_at
             FROM (SELECT r.user_id, r.{conversation} AS conversation_id, {key} AS item_key,
                          chatstore_search_text(r.data) AS body, r.created_at
                   FROM {table} r) AS texts
             WHERE body <> ''"
        ));
    }
    for (table, kind, conversation) in TITLE_SOURCES {
        parts.push(format!(
            "SELECT user_id, '{kind}', {conversation}, '', left(title, {MAX_INDEXED_CHARS}),
                    created_at
             FROM {table} WHERE title <> ''"
        ));
    }
    format!("CREATE VIEW search_sources AS {}", parts.join(" UNION ALL "))
}

/// The searchable text of the item JSON `data` (an SQL expression), on SQLite: as
/// `chatstore_search_text` on PostgreSQL. SQLite's text functions stop at a NUL, so escaped
/// NULs become spaces first (an escaped backslash followed by `u0000` then reads `u0020`: the
/// index may differ from the item there, the item never does).
pub(crate) fn sqlite_item_text(data: &str) -> String {
    format!(
        r"(SELECT CASE WHEN json_valid(j) THEN substr(CASE json_type(j, '$.content')
             WHEN 'text' THEN json_extract(j, '$.content')
             WHEN 'array' THEN (
                 SELECT group_concat(json_extract(part.value, '$.text'), char(10))
                 FROM json_each(j, '$.content') AS part
                 WHERE json_extract(part.value, '$.type') IN ('input_text', 'output_text')
                   AND json_type(part.value, '$.text') = 'text')
           END, 1, {MAX_INDEXED_CHARS}) END
           FROM (SELECT replace({data}, '\u0000', '\u0020') AS j))"
    )
}

/// Removes the entry that `condition` (over `OLD` or `NEW`) names, from the FTS index and
/// from `search_entries`, on SQLite.
fn sqlite_remove(condition: &str) -> String {
    format!(
        "INSERT INTO search_fts (search_fts, rowid, body)
             SELECT 'delete', id, body FROM search_entries WHERE {condition};
         DELETE FROM search_entries WHERE {condition};"
    )
}

/// Adds the entry `select` makes (its columns as `search_entries`' without `id`; no row when
/// there is nothing to index), which `condition` names, and indexes it, on SQLite. The caller
/// removed any earlier entry of the key first.
fn sqlite_add(select: &str, condition: &str) -> String {
    format!(
        "INSERT INTO search_entries (user_id, kind, conversation_id, item_key, body, created_at)
             {select};
         INSERT INTO search_fts (rowid, body)
             SELECT id, body FROM search_entries WHERE {condition};"
    )
}

/// The SQLite schema. The FTS index is written by the source tables' triggers themselves, not
/// by triggers on `search_entries`: SQLite 3.51 fails the first statement a connection
/// prepares after loading the schema (`no such table`) when the FTS table is reached through
/// triggers two levels deep.
pub(crate) fn sqlite_up() -> Vec<String> {
    let mut statements: Vec<String> = vec![
        STATE_TABLE.into(),
        STATE_ROW.into(),
        "CREATE TABLE search_entries (
            id integer PRIMARY KEY,
            user_id text NOT NULL,
            kind text NOT NULL,
            conversation_id text NOT NULL,
            item_key text NOT NULL,
            body text NOT NULL,
            created_at text NOT NULL,
            UNIQUE (user_id, kind, conversation_id, item_key)
        )"
        .into(),
        // `search_entries` is its content: the text is stored once, and `snippet()` reads it.
        "CREATE VIRTUAL TABLE search_fts USING fts5(
            body, content = 'search_entries', content_rowid = 'id',
            tokenize = 'unicode61 remove_diacritics 2')"
            .into(),
    ];
    let mut sources = Vec::new();
    for (table, kind, conversation, _, key) in ITEM_SOURCES {
        let entry = |row: &str| {
            format!(
                "user_id = {row}.user_id AND kind = '{kind}' \
                 AND conversation_id = {row}.{conversation} AND item_key = {}",
                key.replace("r.", &format!("{row}."))
            )
        };
        // Gated on `search_state.enabled` by a join, so that an update's removal before it
        // still runs when indexing is off.
        let text = sqlite_item_text("NEW.data");
        let select = format!(
            "SELECT NEW.user_id, '{kind}', NEW.{conversation}, {}, body, NEW.created_at
             FROM search_state, (SELECT {text} AS body)
             WHERE search_state.enabled AND body <> ''",
            key.replace("r.", "NEW.")
        );
        let add = sqlite_add(&select, &entry("NEW"));
        let (remove_old, remove_new) = (sqlite_remove(&entry("OLD")), sqlite_remove(&entry("NEW")));
        // The insert trigger is skipped whole when indexing is off: no JSON is read.
        statements.push(format!(
            "CREATE TRIGGER search_{table}_insert AFTER INSERT ON {table}
             WHEN (SELECT enabled FROM search_state) BEGIN {remove_new} {add} END"
        ));
        statements.push(format!(
            "CREATE TRIGGER search_{table}_delete AFTER DELETE ON {table} BEGIN {remove_old} END"
        ));
        statements.push(format!(
            "CREATE TRIGGER search_{table}_update AFTER UPDATE ON {table} BEGIN
                 {remove_old} {remove_new} {add}
             END"
        ));
        let text = sqlite_item_text("r.data");
        let key = key.replace("r.", "");
        sources.push(format!(
            "SELECT user_id, '{kind}' AS kind, {conversation} AS conversation_id,
                    {key} AS item_key, body, created_at
             FROM (SELECT r.*, {text} AS body FROM {table} r) WHERE body <> ''"
        ));
    }
    for (table, kind, conversation) in TITLE_SOURCES {
        let entry = |row: &str| {
            format!(
                "user_id = {row}.user_id AND kind = '{kind}' \
                 AND conversation_id = {row}.{conversation} AND item_key = ''"
            )
        };
        let select = format!(
            "SELECT NEW.user_id, '{kind}', NEW.{conversation}, '',
                    substr(NEW.title, 1, {MAX_INDEXED_CHARS}), NEW.created_at
             FROM search_state WHERE enabled AND NEW.title <> ''"
        );
        let add = sqlite_add(&select, &entry("NEW"));
        let (remove_old, remove_new) = (sqlite_remove(&entry("OLD")), sqlite_remove(&entry("NEW")));
        statements.push(format!(
            "CREATE TRIGGER search_{table}_insert AFTER INSERT ON {table}
             WHEN NEW.title IS NOT NULL BEGIN {remove_new} {add} END"
        ));
        statements.push(format!(
            "CREATE TRIGGER search_{table}_update AFTER UPDATE OF title ON {table}
             WHEN OLD.title IS NOT NEW.title BEGIN {remove_old} {add} END"
        ));
        statements.push(format!(
            "CREATE TRIGGER search_{table}_delete AFTER DELETE ON {table}
             WHEN OLD.title IS NOT NULL BEGIN {remove_old} END"
        ));
        sources.push(format!(
            "SELECT user_id, '{kind}', {conversation}, '', substr(title, 1, {MAX_INDEXED_CHARS}),
                    created_at
             FROM {table} WHERE title <> ''"
        ));
    }
    statements.push(format!("CREATE VIEW search_sources AS {}", sources.join(" UNION ALL ")));
    statements
}
