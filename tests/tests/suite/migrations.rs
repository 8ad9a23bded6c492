//! The real migrations, up, down and up again, on both databases.

use chatstore_tests::{Backend, dual_backend_tests, with_database};
use migration::{Migrator, MigratorTrait};
use sea_orm_migration::SchemaManager;

const TABLES: [&str; 8] = [
    "chats",
    "conversation_items",
    "session_idempotency_keys",
    "chatkit_threads",
    "chatkit_items",
    "chatkit_item_feedback",
    "chatkit_attachments",
    "chatkit_attachment_contents",
];

/// The index behind each access path of `API.md` (session items are read through their
/// primary key, `(user_id, chat_id, position)`).
const INDEXES: [(&str, &str); 5] = [
    ("chats", "chats_user_active_updated"),
    ("chats", "chats_user_updated"),
    ("chatkit_threads", "chatkit_threads_user_created"),
    ("chatkit_items", "chatkit_items_thread_created_seq"),
    ("chatkit_items", "chatkit_items_user_thread_item"),
];

async fn tables_present(manager: &SchemaManager<'_>) -> Vec<&'static str> {
    let mut present = Vec::new();
    for table in TABLES {
        if manager.has_table(table).await.expect("table lookup") {
            present.push(table);
        }
    }
    present
}

async fn migrations_go_up_down_and_up_again(backend: Backend) {
    with_database(backend, async |database| {
        let db = database.connect().await;
        let conn = db.connection();
        let manager = SchemaManager::new(conn);
        assert!(tables_present(&manager).await.is_empty(), "a new database is empty");

        Migrator::up(conn, None).await.expect("up");
        assert_eq!(tables_present(&manager).await, TABLES);
        for (table, index) in INDEXES {
            assert!(manager.has_index(table, index).await.expect("index lookup"), "{index}");
        }
        assert!(Migrator::get_pending_migrations(conn).await.expect("status").is_empty());

        Migrator::down(conn, None).await.expect("down");
        assert!(tables_present(&manager).await.is_empty(), "down removes every table");
        assert_eq!(Migrator::get_applied_migrations(conn).await.expect("status").len(), 0);

        Migrator::up(conn, None).await.expect("up again");
        assert_eq!(tables_present(&manager).await, TABLES);
        // The re-created schema is usable, not just present.
        db.sessions().add_items("u", "s", &["{\"a\":1}"], None).await.expect("write");
        assert_eq!(db.sessions().latest_items("u", "s", 10).await.expect("read"), ["{\"a\":1}"]);
        db.close().await;
    })
    .await;
}

async fn each_migration_steps_down_on_its_own(backend: Backend) {
    with_database(backend, async |database| {
        let db = database.connect().await;
        let conn = db.connection();
        let manager = SchemaManager::new(conn);
        Migrator::up(conn, None).await.expect("up");
        let total = Migrator::migrations().len();
        for remaining in (0..total).rev() {
            Migrator::down(conn, Some(1)).await.expect("one step down");
            assert_eq!(
                Migrator::get_applied_migrations(conn).await.expect("status").len(),
                remaining
            );
        }
        assert!(tables_present(&manager).await.is_empty());
        // Going up twice is a no-op the second time.
        Migrator::up(conn, None).await.expect("up");
        Migrator::up(conn, None).await.expect("up when up to date");
        assert_eq!(Migrator::get_applied_migrations(conn).await.expect("status").len(), total);
        db.close().await;
    })
    .await;
}

/// How `chats_deleted_at` is defined, as the database prints it.
async fn deleted_at_index_definition(db: &repositories::Db) -> String {
    use sea_orm::ConnectionTrait;
    let sql = match db.db_backend() {
        sea_orm::DbBackend::Postgres => {
            "SELECT indexdef AS definition FROM pg_indexes WHERE indexname = 'chats_deleted_at'"
        }
        _ => "SELECT sql AS definition FROM sqlite_master WHERE name = 'chats_deleted_at'",
    };
    let statement = sea_orm::Statement::from_string(db.db_backend(), sql);
    let row = db.connection().query_one_raw(statement).await.expect("query").expect("the index");
    row.try_get::<String>("", "definition").expect("its definition")
}

/// Appends never write into the index of soft-deleted chats: it holds only those (migration
/// 13), and stepping down makes it a full index again.
async fn the_deleted_chats_index_holds_only_deleted_chats(backend: Backend) {
    with_database(backend, async |database| {
        let db = database.connect().await;
        let conn = db.connection();
        Migrator::up(conn, None).await.expect("up");
        let partial = deleted_at_index_definition(&db).await;
        assert!(
            partial.contains("WHERE deleted_at IS NOT NULL")
                || partial.contains("WHERE (deleted_at IS NOT NULL)"),
            "{partial}"
        );
        let position = Migrator::migrations()
            .iter()
            .position(|migration| migration.name() == "m20261205_000013_deleted_chats_index")
            .expect("migration 13");
        let steps = u32::try_from(Migrator::migrations().len() - position).expect("a few");
        Migrator::down(conn, Some(steps)).await.expect("down to before migration 13");
        let full = deleted_at_index_definition(&db).await;
        assert!(!full.contains("WHERE"), "{full}");
        db.close().await;
    })
    .await;
}

dual_backend_tests!(
    migrations_go_up_down_and_up_again,
    each_migration_steps_down_on_its_own,
    the_deleted_chats_index_holds_only_deleted_chats,
);
