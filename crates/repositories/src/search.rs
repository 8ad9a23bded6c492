//! Full-text search over a user's conversations: session items, chat titles, ChatKit thread
//! titles and thread items.
//!
//! The index (`search_entries`, and `search_fts` on SQLite) is kept in step by database
//! triggers (see the `m20261130_000005_search` migration; the GIN index PostgreSQL searches
//! is `m20261130_000008_search_user_gin`'s), so no write path here or elsewhere
//! has anything to do for it. This module only reads it, and switches indexing on or off.
//!
//! Hits come best first, ties broken by the entry's id, and a page's cursor is the last hit's
//! `(score, id)`: the next page starts strictly after it in that order, so paging never skips
//! or repeats a hit, however many share a score.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DbBackend, Statement, Value};

use crate::{Db, Page, RepoError, RepoResult};

/// Longest query, in characters.
pub const MAX_QUERY_CHARS: usize = 1000;

/// What a search looks through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SearchKind {
    #[default]
    All,
    Sessions,
    Threads,
}

impl SearchKind {
    /// The `kind` of the entries it keeps, `None` for all.
    fn entry_kind(self) -> Option<&'static str> {
        match self {
            Self::All => None,
            Self::Sessions => Some("session"),
            Self::Threads => Some("thread"),
        }
    }
}

impl FromStr for SearchKind {
    type Err = RepoError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "all" => Ok(Self::All),
            "sessions" => Ok(Self::Sessions),
            "threads" => Ok(Self::Threads),
            _ => Err(RepoError::Invalid(format!(
                "kind must be `all`, `sessions` or `threads`, not {text:?}"
            ))),
        }
    }
}

/// The words searched for: not blank, at most [`MAX_QUERY_CHARS`] characters, no NUL, and at
/// least one letter or digit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchText(String);

impl SearchText {
    pub fn parse(text: &str) -> RepoResult<Self> {
        let text = text.trim();
        if text.is_empty() {
            return Err(RepoError::Invalid("q must not be empty".into()));
        }
        if text.chars().count() > MAX_QUERY_CHARS {
            return Err(RepoError::Invalid(format!(
                "q must be at most {MAX_QUERY_CHARS} characters"
            )));
        }
        if text.contains('\0') {
            return Err(RepoError::Invalid("q must not contain NUL characters".into()));
        }
        if !text.chars().any(char::is_alphanumeric) {
            return Err(RepoError::Invalid("q must contain at least one letter or digit".into()));
        }
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The FTS5 query: every whitespace-separated word as a quoted phrase (the tokenizer then
    /// splits it as it split the text, so `example.com` finds the words `example com` in a
    /// row), all required, the last one as a prefix. Words without a letter or digit would be
    /// empty phrases, and are left out.
    fn fts5_query(&self) -> String {
        let words: Vec<&str> = self
            .0
            .split_whitespace()
            .filter(|word| word.chars().any(char::is_alphanumeric))
            .collect();
        let mut query = String::new();
        for (index, word) in words.iter().enumerate() {
            if index > 0 {
                query.push(' ');
            }
            query.push('"');
            query.push_str(&word.replace('"', "\"\""));
            query.push('"');
            if index + 1 == words.len() {
                query.push('*');
            }
        }
        query
    }
}

/// Where a page of hits ends: the last hit's score (its exact bits) and entry id. Opaque to
/// clients: `s<16 hex digits>.<id>`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SearchCursor {
    score: f64,
    id: i64,
}

impl SearchCursor {
    pub fn parse(text: &str) -> RepoResult<Self> {
        let bad = || RepoError::Invalid("after is not a cursor this search returned".into());
        let rest = text.strip_prefix('s').ok_or_else(bad)?;
        let (bits, id) = rest.split_once('.').ok_or_else(bad)?;
        if bits.len() != 16 || !bits.bytes().all(|byte| byte.is_ascii_hexdigit()) {
            return Err(bad());
        }
        let score = f64::from_bits(u64::from_str_radix(bits, 16).map_err(|_| bad())?);
        let id: i64 = id.parse().map_err(|_| bad())?;
        if !score.is_finite() || id < 0 {
            return Err(bad());
        }
        Ok(Self { score, id })
    }

    fn encode(score: f64, id: i64) -> String {
        format!("s{:016x}.{id}", score.to_bits())
    }
}

/// What a hit points at inside its conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemRef {
    /// The conversation's title.
    Title,
    /// A session item, by position.
    Position(i64),
    /// A ChatKit thread item, by id.
    ItemId(String),
}

/// One hit.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchHit {
    /// `session` (a chat) or `thread` (a ChatKit thread).
    pub kind: String,
    pub conversation_id: String,
    /// The conversation's title, if it has one.
    pub title: Option<String>,
    pub item_ref: ItemRef,
    /// A short excerpt of the text around the words found.
    pub snippet: String,
    /// Larger is better; comparable within one search only.
    pub score: f64,
    /// When the item was added (for a title: when the conversation was created).
    pub created_at: DateTime<Utc>,
    id: i64,
}

/// A search's parameters, parsed.
#[derive(Debug, Clone)]
pub struct SearchRequest {
    pub text: SearchText,
    pub kind: SearchKind,
    pub include_inactive: bool,
    pub after: Option<SearchCursor>,
    pub limit: u64,
}

/// What switching indexing on or off did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexChange {
    /// It already was in the state asked for.
    Unchanged,
    /// Switched on: every entry was rebuilt from the stored conversations (this many).
    Rebuilt(u64),
    /// Switched off: every entry was removed.
    Emptied,
}

/// The `tsquery` for `$1`, as text (NULL when `q` has no words): the lexemes PostgreSQL's own
/// parser finds in `q` (so `example.com` or `v1.2` are words as they are in the text), all
/// required, the last one a prefix.
///
/// Built by a statement of its own and handed to [`POSTGRES_SEARCH_SQL`] as a parameter:
/// built inside the search, it is unknown to the planner, which then cannot estimate how
/// many entries match and ANDs the GIN index with every entry of the user.
const POSTGRES_TSQUERY_SQL: &str = "\
SELECT (
    SELECT string_agg(quote_literal(word.lexeme)
                      || CASE WHEN word.positions @> ARRAY[last.position] THEN ':*' ELSE '' END,
                      ' & ')
    FROM unnest(to_tsvector('chatstore_search', $1)) AS word,
         (SELECT max(position) AS position
          FROM unnest(to_tsvector('chatstore_search', $1)) AS w,
               unnest(w.positions) AS position) AS last
)::tsquery::text AS tsquery";

/// The ranked, filtered hits, best first, after the cursor; then the snippets of one page.
/// `$1` user, `$2` the `tsquery` ([`POSTGRES_TSQUERY_SQL`]), `$3` entry kind or NULL, `$4`
/// include inactive, `$5`/`$6` the cursor's score and id (NULL/0 for the first page), `$7`
/// rows to read. The GIN index on `(user_id, document)` answers the first two conditions.
const POSTGRES_SEARCH_SQL: &str = "\
SELECT page.id, page.kind, page.conversation_id, page.item_key, page.created_at, page.score,
       page.title,
       ts_headline('chatstore_search', page.body, $2::tsquery,
                   'MaxWords=30, MinWords=12, ShortWord=0, StartSel=\"\", StopSel=\"\"')
           AS snippet
FROM (
    SELECT * FROM (
        SELECT e.id, e.kind, e.conversation_id, e.item_key, e.body, e.created_at,
               ts_rank(e.document, $2::tsquery, 1)::float8 AS score,
               CASE e.kind WHEN 'session' THEN c.title ELSE t.title END AS title
        FROM search_entries e
        LEFT JOIN chats c
               ON e.kind = 'session' AND c.user_id = e.user_id AND c.chat_id = e.conversation_id
        LEFT JOIN chatkit_threads t
               ON e.kind = 'thread' AND t.user_id = e.user_id AND t.thread_id = e.conversation_id
        WHERE e.user_id = $1 AND e.document @@ $2::tsquery
          AND ($3::text IS NULL OR e.kind = $3::text)
          AND (e.kind = 'thread' OR $4 OR c.is_active)
    ) AS hits
    WHERE $5::float8 IS NULL OR score < $5::float8 OR (score = $5::float8 AND id > $6)
    ORDER BY score DESC, id
    LIMIT $7
) AS page
ORDER BY page.score DESC, page.id";

/// [`POSTGRES_SEARCH_SQL`] on SQLite, with `$2` an FTS5 query (see
/// [`SearchText::fts5_query`]). Scores are `-bm25()`, so larger is better on both. The
/// snippet comes as bytes: SQLite's JSON functions turn an escaped lone surrogate into bytes
/// that are not UTF-8, and such a text must still be readable (lossily).
const SQLITE_SEARCH_SQL: &str = "\
SELECT page.*,
       (SELECT CAST(snippet(search_fts, 0, '', '', '…', 24) AS BLOB) FROM search_fts
        WHERE search_fts MATCH $2 AND rowid = page.id) AS snippet
FROM (
    SELECT * FROM (
        SELECT e.id, e.kind, e.conversation_id, e.item_key, e.created_at,
               -bm25(search_fts) AS score,
               CASE e.kind WHEN 'session' THEN c.title ELSE t.title END AS title
        FROM search_fts
        JOIN search_entries e ON e.id = search_fts.rowid
        LEFT JOIN chats c
               ON e.kind = 'session' AND c.user_id = e.user_id AND c.chat_id = e.conversation_id
        LEFT JOIN chatkit_threads t
               ON e.kind = 'thread' AND t.user_id = e.user_id AND t.thread_id = e.conversation_id
        WHERE search_fts MATCH $2 AND e.user_id = $1
          AND ($3 IS NULL OR e.kind = $3)
          AND (e.kind = 'thread' OR $4 OR c.is_active)
    )
    WHERE $5 IS NULL OR score < $5 OR (score = $5 AND id > $6)
    ORDER BY score DESC, id
    LIMIT $7
) AS page
ORDER BY page.score DESC, page.id";

/// The search operations of one database.
#[derive(Debug, Clone, Copy)]
pub struct Search<'a> {
    db: &'a Db,
}

impl Db {
    pub fn search(&self) -> Search<'_> {
        Search { db: self }
    }
}

impl Search<'_> {
    /// One page of the user's hits for `request`, best first.
    pub async fn find(&self, user: &str, request: &SearchRequest) -> RepoResult<Page<SearchHit>> {
        // Appends are indexed after they commit: index what of this user's still waits, so
        // the search sees every write made before it.
        self.db.search_index().catch_up_user(user).await?;
        let backend = self.db.db_backend();
        let (sql, query) = match backend {
            DbBackend::Postgres => (POSTGRES_SEARCH_SQL, self.tsquery(&request.text).await?),
            _ => (SQLITE_SEARCH_SQL, request.text.fts5_query()),
        };
        if query.is_empty() {
            return Ok(Page { data: Vec::new(), has_more: false, after: None });
        }
        let rows = i64::try_from(request.limit.saturating_add(1)).unwrap_or(i64::MAX);
        let values: [Value; 7] = [
            user.into(),
            query.into(),
            request.kind.entry_kind().map(str::to_owned).into(),
            request.include_inactive.into(),
            request.after.map(|cursor| cursor.score).into(),
            request.after.map_or(0, |cursor| cursor.id).into(),
            rows.into(),
        ];
        let statement = Statement::from_sql_and_values(backend, sql, values);
        let rows = self.db.connection().query_all_raw(statement).await?;
        let hits = rows.iter().map(hit).collect::<RepoResult<Vec<_>>>()?;
        Ok(Page::from_rows(hits, request.limit, |hit| SearchCursor::encode(hit.score, hit.id)))
    }

    /// `text` as a PostgreSQL `tsquery` (see [`POSTGRES_TSQUERY_SQL`]); empty when it has no
    /// words.
    async fn tsquery(&self, text: &SearchText) -> RepoResult<String> {
        let statement = Statement::from_sql_and_values(
            DbBackend::Postgres,
            POSTGRES_TSQUERY_SQL,
            [text.as_str().into()],
        );
        let row = self.db.connection().query_one_raw(statement).await?;
        let query: Option<String> = match row {
            Some(row) => row.try_get("", "tsquery")?,
            None => None,
        };
        Ok(query.unwrap_or_default())
    }

    /// Switches indexing on or off for the whole database, as `search.enabled` says. Off
    /// empties the index (it would only grow stale); on rebuilds it from every stored
    /// conversation when it was off. One transaction: searches see the old index or the new.
    ///
    /// Writes that commit while it runs, from another server of the same database, may be
    /// missed by a rebuild: change the setting with one server running.
    pub async fn configure(&self, enabled: bool) -> RepoResult<IndexChange> {
        let backend = self.db.db_backend();
        let (_writer, txn) = self.db.begin_write().await?;
        let state = txn
            .query_one_raw(Statement::from_string(backend, "SELECT enabled FROM search_state"))
            .await?
            .ok_or_else(|| RepoError::Invalid("search_state has no row".into()))?;
        if state.try_get::<bool>("", "enabled")? == enabled {
            return Ok(IndexChange::Unchanged);
        }
        txn.execute_raw(Statement::from_sql_and_values(
            backend,
            "UPDATE search_state SET enabled = $1",
            [enabled.into()],
        ))
        .await?;
        let change = if enabled {
            let rebuilt = txn
                .execute_unprepared(
                    "INSERT INTO search_entries
                         (user_id, kind, conversation_id, item_key, body, created_at)
                     SELECT user_id, kind, conversation_id, item_key, body, created_at
                     FROM search_sources",
                )
                .await?;
            if backend == DbBackend::Sqlite {
                txn.execute_unprepared("INSERT INTO search_fts (search_fts) VALUES ('rebuild')")
                    .await?;
            }
            // The rebuild took every stored item: none waits for the background indexer.
            txn.execute_unprepared("UPDATE chats SET search_indexed = position_base + item_count")
                .await?;
            IndexChange::Rebuilt(rebuilt.rows_affected())
        } else {
            txn.execute_unprepared("DELETE FROM search_entries").await?;
            if backend == DbBackend::Sqlite {
                txn.execute_unprepared("INSERT INTO search_fts (search_fts) VALUES ('delete-all')")
                    .await?;
            }
            IndexChange::Emptied
        };
        if backend == DbBackend::Postgres {
            // Thread items queued for search (migration 000012): a rebuild took them all, and
            // switched off, the index is empty and the next rebuild will take them.
            txn.execute_unprepared("DELETE FROM search_queue").await?;
        }
        txn.commit().await?;
        Ok(change)
    }

    /// How many entries the index holds for `user` (for tests and checks).
    pub async fn entry_count(&self, user: &str) -> RepoResult<i64> {
        self.db.search_index().catch_up_user(user).await?;
        let backend = self.db.db_backend();
        let row = self
            .db
            .connection()
            .query_one_raw(Statement::from_sql_and_values(
                backend,
                "SELECT count(*) AS entries FROM search_entries WHERE user_id = $1",
                [user.into()],
            ))
            .await?
            .ok_or_else(|| RepoError::Invalid("count(*) returned no row".into()))?;
        Ok(row.try_get::<i64>("", "entries")?)
    }
}

/// The search of one rare word on PostgreSQL, for [`Db::query_plans`]: it must read through
/// an index, never all of `search_entries`. (On a small table the planner may rightly pick the
/// primary key over the GIN index on `(user_id, document)`, so only a whole-table read is
/// checked; SQLite's FTS5 table is virtual and always read through its own index.)
pub(crate) fn read_statements(backend: DbBackend) -> Vec<(&'static str, Statement)> {
    if backend != DbBackend::Postgres {
        return Vec::new();
    }
    let values: [Value; 7] = [
        "u1".into(),
        "'zebra':*".into(),
        Option::<String>::None.into(),
        false.into(),
        Option::<f64>::None.into(),
        0_i64.into(),
        21_i64.into(),
    ];
    vec![(
        "search of a rare word",
        Statement::from_sql_and_values(backend, POSTGRES_SEARCH_SQL, values),
    )]
}

fn hit(row: &sea_orm::QueryResult) -> RepoResult<SearchHit> {
    let kind: String = row.try_get("", "kind")?;
    let item_key: String = row.try_get("", "item_key")?;
    let item_ref = if item_key.is_empty() {
        ItemRef::Title
    } else if kind == "session" {
        ItemRef::Position(item_key.parse().map_err(|_| {
            RepoError::Invalid(format!("a session search entry has the key {item_key:?}"))
        })?)
    } else {
        ItemRef::ItemId(item_key)
    };
    Ok(SearchHit {
        kind,
        conversation_id: row.try_get("", "conversation_id")?,
        title: row.try_get("", "title")?,
        item_ref,
        snippet: snippet(row)?,
        score: row.try_get("", "score")?,
        created_at: row.try_get("", "created_at")?,
        id: row.try_get("", "id")?,
    })
}

/// The snippet column: text on PostgreSQL, bytes on SQLite (see [`SQLITE_SEARCH_SQL`]).
fn snippet(row: &sea_orm::QueryResult) -> RepoResult<String> {
    if let Ok(text) = row.try_get::<Option<String>>("", "snippet") {
        return Ok(text.unwrap_or_default());
    }
    let bytes: Option<Vec<u8>> = row.try_get("", "snippet")?;
    Ok(String::from_utf8_lossy(&bytes.unwrap_or_default()).into_owned())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_exactly() {
        for score in [0.0, 1e-7, 0.1 + 0.2, 12345.678] {
            let text = SearchCursor::encode(score, 42);
            assert_eq!(SearchCursor::parse(&text).unwrap(), SearchCursor { score, id: 42 });
        }
        for bad in
            ["", "s", "s0.1", "x0000000000000000.1", "s000000000000000g.1", "s7ff8000000000000.1"]
        {
            assert!(SearchCursor::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn queries_are_words_with_a_letter_or_digit() {
        assert!(SearchText::parse("  ").is_err());
        assert!(SearchText::parse("?!").is_err());
        assert!(SearchText::parse("a\0b").is_err());
        assert!(SearchText::parse(&"x".repeat(MAX_QUERY_CHARS + 1)).is_err());
        let text = SearchText::parse(r#" say "hi" - example.com "#).unwrap();
        assert_eq!(text.fts5_query(), r#""say" """hi""" "example.com"*"#);
    }
}
