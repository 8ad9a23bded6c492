//! Every list and page query reads through an index, never a whole table.

use chatstore_tests::{Backend, TestApp, dual_backend_tests, with_app};
use entity::{chatkit_item, chatkit_thread};
use repositories::{ChatChanges, Tags};
use sea_orm::{ConnectionTrait, EntityTrait};

/// Rows spread over users, sessions, chats and threads: enough that a full scan would be a
/// real choice for the planner (on a table of a few pages it rightly prefers one).
async fn seed(app: &TestApp) {
    let item = "{\"role\":\"user\",\"content\":\"hello\"}";
    let batch = vec![item; 20];
    for user in 0..10 {
        for session in 0..100 {
            app.db
                .sessions()
                .add_items(&format!("u{user}"), &format!("s{session}"), &batch, None)
                .await
                .unwrap();
        }
    }

    // Indexed for search, as the server's background indexer would have by now.
    while app.db.search_index().index_batch().await.unwrap().indexed_any() {}

    // Tags on a third of the chats (t1), and a second tag on a third of those (t2).
    for user in 0..10 {
        for session in (0..100).step_by(3) {
            let tags = if session % 9 == 0 { vec!["t1", "t2"] } else { vec!["t1"] };
            let tags = Tags::parse(tags.into_iter().map(str::to_owned).collect()).unwrap();
            let changes = ChatChanges { tags: Some(tags), ..ChatChanges::default() };
            let (user, chat) = (format!("u{user}"), format!("s{session}"));
            app.db.chats().update(&user, &chat, changes).await.unwrap();
        }
    }

    let db = app.db.connection();
    let at = chrono::DateTime::parse_from_rfc3339("2025-10-06T12:00:00Z").unwrap().to_utc();
    let threads: Vec<_> = (0..20)
        .flat_map(|user| (0..100).map(move |thread| (user, thread)))
        .map(|(user, thread)| chatkit_thread::ActiveModel {
            user_id: sea_orm::Set(format!("u{user}")),
            thread_id: sea_orm::Set(format!("thr_{thread}")),
            title: sea_orm::Set(None),
            created_at: sea_orm::Set(at + chrono::Duration::seconds(thread)),
            updated_at: sea_orm::Set(at),
            data: sea_orm::Set("{}".to_owned()),
        })
        .collect();
    for chunk in threads.chunks(500) {
        chatkit_thread::Entity::insert_many(chunk.to_vec())
            .exec_without_returning(db)
            .await
            .unwrap();
    }
    let items: Vec<_> = (0..20)
        .flat_map(|user| {
            (0..5).flat_map(move |thread| (0..200).map(move |item| (user, thread, item)))
        })
        .map(|(user, thread, item)| chatkit_item::ActiveModel {
            seq: sea_orm::NotSet,
            user_id: sea_orm::Set(format!("u{user}")),
            thread_id: sea_orm::Set(format!("thr_{thread}")),
            item_id: sea_orm::Set(format!("msg_{item}")),
            item_type: sea_orm::Set("end_of_turn".to_owned()),
            created_at: sea_orm::Set(at + chrono::Duration::seconds(item % 50)),
            data: sea_orm::Set("{}".to_owned()),
        })
        .collect();
    for chunk in items.chunks(500) {
        chatkit_item::Entity::insert_many(chunk.to_vec()).exec_without_returning(db).await.unwrap();
    }
    db.execute_unprepared("ANALYZE").await.unwrap();
}

async fn no_list_or_page_query_scans_a_whole_table(backend: Backend) {
    with_app(backend, async |app| {
        seed(app).await;
        let plans = app.db.query_plans().await.unwrap();
        // The search is planned on PostgreSQL only: SQLite reads its FTS5 table through the
        // table's own index, whatever the plan says.
        let families: &[&str] = match backend {
            Backend::Postgres => &["session", "chats", "chatkit", "search"],
            Backend::Sqlite => &["session", "chats", "chatkit"],
        };
        for family in families {
            assert!(
                plans.iter().any(|plan| plan.name.starts_with(family)),
                "the {family} queries are planned: {plans:?}"
            );
        }
        for plan in plans {
            assert!(
                !plan.scans_a_whole_table(),
                "{} scans a whole table:\n{}\n{}",
                plan.name,
                plan.sql,
                plan.plan
            );
        }
    })
    .await;
}

/// The session reads of an agent turn are planned once per connection, not at every turn:
/// after six executions, PostgreSQL keeps the prepared statement's generic plan (parameters
/// as `$1`, `$2`), on a session long enough that a plan made for its own values looks cheaper
/// (the read used to be planned afresh at every call there, 105 µs of planning a turn).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turn_reads_keep_one_plan_for_every_session() {
    with_app(Backend::Postgres, async |app| {
        let item = "{\"role\":\"user\",\"content\":\"hello\"}";
        let batch = vec![item; 1000];
        for session in 0..4 {
            for _ in 0..5 {
                app.db
                    .sessions()
                    .add_items("u1", &format!("s{session}"), &batch, None)
                    .await
                    .unwrap();
            }
        }
        app.db.connection().execute_unprepared("ANALYZE").await.unwrap();
        let plans = app.db.prepared_turn_read_plans("u1", "s1", 50).await.unwrap();
        assert_eq!(plans.len(), 2);
        for plan in plans {
            assert!(
                plan.plan.contains("user_id = $1") && !plan.plan.contains("'u1'"),
                "{} is planned for each session's values:\n{}",
                plan.name,
                plan.plan
            );
        }
    })
    .await;
}

dual_backend_tests!(no_list_or_page_query_scans_a_whole_table);
