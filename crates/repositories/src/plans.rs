//! The query plans of every list and page query, so tests can check that none of them reads
//! a whole table.

use sea_orm::{ConnectionTrait, DbBackend, QueryResult, Statement};

use crate::{Db, RepoResult, chatkit, chats, search, sessions};

/// A read statement the repositories run, with its plan on this database.
#[derive(Debug, Clone)]
pub struct QueryPlan {
    pub name: &'static str,
    pub sql: String,
    /// `EXPLAIN` (PostgreSQL) or `EXPLAIN QUERY PLAN` (SQLite) output, one line per row.
    pub plan: String,
}

impl QueryPlan {
    /// Whether the plan reads some table from end to end instead of through an index.
    pub fn scans_a_whole_table(&self) -> bool {
        self.plan.lines().any(|line| {
            let line = line.trim_start_matches(|c: char| !c.is_ascii_alphabetic());
            line.starts_with("Seq Scan") || (line.starts_with("SCAN ") && !line.contains("USING"))
        })
    }
}

impl Db {
    /// Plans every list and page query of the repositories (with sample ids).
    pub async fn query_plans(&self) -> RepoResult<Vec<QueryPlan>> {
        let backend = self.db_backend();
        let mut plans = Vec::new();
        let statements = sessions::read_statements(backend)
            .into_iter()
            .chain(chats::read_statements(backend))
            .chain(chatkit::read_statements(backend))
            .chain(search::read_statements(backend));
        for (name, statement) in statements {
            let prefix = match backend {
                DbBackend::Sqlite => "EXPLAIN QUERY PLAN ",
                _ => "EXPLAIN ",
            };
            let explain =
                Statement { sql: format!("{prefix}{}", statement.sql), ..statement.clone() };
            let rows = self.connection().query_all_raw(explain).await?;
            let plan = plan_text(backend, &rows)?;
            plans.push(QueryPlan { name, sql: statement.sql, plan });
        }
        Ok(plans)
    }

    /// The plans PostgreSQL keeps for the session reads of an agent turn once each has run
    /// as a prepared statement as often as a busy connection runs it: the plan of a seventh
    /// execution on `user`'s `session`, after six. Prepared statements are planned either
    /// once for all parameters (a generic plan) or afresh at every execution, when the
    /// planner judges the generic plan dearer; the second pays the planning at every turn.
    /// Empty off PostgreSQL, which has no such choice.
    pub async fn prepared_turn_read_plans(
        &self,
        user: &str,
        session: &str,
        limit: u64,
    ) -> RepoResult<Vec<QueryPlan>> {
        use sea_orm::TransactionTrait;
        if self.db_backend() != DbBackend::Postgres {
            return Ok(Vec::new());
        }
        // One connection for the prepared statements: a transaction's.
        let txn = self.connection().begin().await?;
        let literal = |text: &str| format!("'{}'", text.replace('\'', "''"));
        let arguments = format!("({}, {}, {limit})", literal(user), literal(session));
        let mut plans = Vec::new();
        for (name, sql) in sessions::turn_reads_pg() {
            txn.execute_unprepared(&format!("PREPARE turn_read (text, text, bigint) AS {sql}"))
                .await?;
            for _ in 0..6 {
                txn.execute_unprepared(&format!("EXECUTE turn_read {arguments}")).await?;
            }
            let explain = Statement::from_string(
                DbBackend::Postgres,
                format!("EXPLAIN EXECUTE turn_read {arguments}"),
            );
            let plan = plan_text(DbBackend::Postgres, &txn.query_all_raw(explain).await?)?;
            txn.execute_unprepared("DEALLOCATE turn_read").await?;
            plans.push(QueryPlan { name, sql: sql.to_owned(), plan });
        }
        txn.rollback().await?;
        Ok(plans)
    }
}

/// The rows of `EXPLAIN` (PostgreSQL) or `EXPLAIN QUERY PLAN` (SQLite), a line each.
fn plan_text(backend: DbBackend, rows: &[QueryResult]) -> RepoResult<String> {
    let column = match backend {
        DbBackend::Sqlite => "detail",
        _ => "QUERY PLAN",
    };
    let lines =
        rows.iter().map(|row| row.try_get::<String>("", column)).collect::<Result<Vec<_>, _>>()?;
    Ok(lines.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::QueryPlan;

    fn plan(text: &str) -> QueryPlan {
        QueryPlan { name: "q", sql: String::new(), plan: text.to_owned() }
    }

    #[test]
    fn whole_table_scans_are_recognised_on_both_databases() {
        let scans = [
            "Seq Scan on conversation_items  (cost=0.00..1.00 rows=1 width=8)",
            "Limit\n  ->  Sort\n        ->  Seq Scan on chats  (cost=0.00..2.50 rows=1 width=8)",
            "SCAN conversation_items",
        ];
        for text in scans {
            assert!(plan(text).scans_a_whole_table(), "{text}");
        }
        let lookups = [
            "Index Scan using conversation_items_pkey on conversation_items",
            "Bitmap Heap Scan on conversation_items\n  ->  Bitmap Index Scan on conversation_items_pkey",
            "SEARCH conversation_items USING INDEX sqlite_autoindex_conversation_items_1 (user_id=?)",
            "SCAN chats USING COVERING INDEX chats_user_updated",
        ];
        for text in lookups {
            assert!(!plan(text).scans_a_whole_table(), "{text}");
        }
    }
}
