//! Makes PostgreSQL's search indexing cheap enough for every append to pay it.
//!
//! Migration 000005 wrote the text helpers (`chatstore_search_enabled`, `_json`, `_text`) in
//! `LANGUAGE sql`. PostgreSQL inlines such a function only when its body is a single plain
//! expression; these have subqueries, so each was planned afresh every time a statement used
//! it: every append's trigger planned `chatstore_search_text` and `chatstore_search_enabled`
//! again. `EXPLAIN ANALYZE` of a two-item append put its search trigger at about 0.6 ms, two
//! thirds of the statement. In PL/pgSQL the plans are cached per connection, and the items'
//! trigger reads `search_state` inside its one cached `INSERT` rather than through a function
//! call: the trigger drops to about 0.15 ms, most of it `to_tsvector` and the index entries.
//! Same signatures, same results (the `search_sources` view and the generated `document`
//! column are untouched); SQLite is unchanged.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

use crate::m20261130_000005_search::{
    ITEM_SOURCES, MAX_INDEXED_CHARS, item_entries_delete, postgres_helper_functions,
    postgres_item_trigger_functions,
};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        let db = manager.get_connection();
        for statement in plpgsql_functions() {
            db.execute_unprepared(&statement).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        let db = manager.get_connection();
        // `CREATE OR REPLACE` may change a function's language: only its signature and
        // return type must stay, and they do.
        let originals =
            postgres_helper_functions().into_iter().chain(postgres_item_trigger_functions());
        for statement in originals {
            db.execute_unprepared(&statement).await?;
        }
        Ok(())
    }
}

pub(crate) fn plpgsql_functions() -> Vec<String> {
    let mut statements = vec![
        "CREATE OR REPLACE FUNCTION chatstore_search_enabled() RETURNS boolean
         LANGUAGE plpgsql STABLE AS $$
         BEGIN RETURN coalesce((SELECT enabled FROM search_state), TRUE); END $$"
            .to_owned(),
        // As in 000005: escapes of NUL or of a lone surrogate (valid JSON that `jsonb`
        // refuses) become spaces, `\\` pairs set aside first.
        r"CREATE OR REPLACE FUNCTION chatstore_search_json(data text) RETURNS jsonb
         LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
         BEGIN
             IF strpos(data, '\u') = 0 THEN RETURN data::jsonb; END IF;
             RETURN replace(regexp_replace(replace(data, '\\', chr(1)),
                                           '\\u(0000|[dD][89a-fA-F][0-9a-fA-F]{2})', '\\u0020', 'g'),
                            chr(1), '\\')::jsonb;
         END $$"
            .to_owned(),
        format!(
            "CREATE OR REPLACE FUNCTION chatstore_search_text(data text) RETURNS text
             LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
             DECLARE content jsonb := chatstore_search_json(data) -> 'content';
             BEGIN
                 CASE jsonb_typeof(content)
                 WHEN 'string' THEN RETURN left(content #>> '{{}}', {MAX_INDEXED_CHARS});
                 WHEN 'array' THEN RETURN left((
                     SELECT string_agg(part ->> 'text', E'\\n' ORDER BY n)
                     FROM jsonb_array_elements(content) WITH ORDINALITY AS parts (part, n)
                     WHERE part ->> 'type' IN ('input_text', 'output_text')
                       AND jsonb_typeof(part -> 'text') = 'string'), {MAX_INDEXED_CHARS});
                 ELSE RETURN NULL;
                 END CASE;
             END $$"
        ),
    ];
    for (table, kind, conversation, key, _) in ITEM_SOURCES {
        let insert = format!(
            "INSERT INTO search_entries (user_id, kind, conversation_id, item_key, body, created_at)
             SELECT r.user_id, '{kind}', r.{conversation}, {key}, texts.body, r.created_at
             FROM added r CROSS JOIN LATERAL (SELECT chatstore_search_text(r.data) AS body) AS texts
             WHERE texts.body <> '' AND coalesce((SELECT enabled FROM search_state), TRUE)
             ON CONFLICT (user_id, kind, conversation_id, item_key)
             DO UPDATE SET body = excluded.body, created_at = excluded.created_at;"
        );
        let delete = item_entries_delete(kind, conversation, key);
        for (event, body) in [("insert", insert.clone()), ("update", format!("{delete} {insert}"))]
        {
            statements.push(format!(
                "CREATE OR REPLACE FUNCTION search_{table}_{event}() RETURNS trigger
                 LANGUAGE plpgsql AS $$ BEGIN {body} RETURN NULL; END $$"
            ));
        }
    }
    statements
}
