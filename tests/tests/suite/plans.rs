//! Every list and page query reads through an index, never a whole table.

use chatstore_tests::{Backend, dual_backend_tests, with_app};
use sea_orm::ConnectionTrait;

async fn no_list_or_page_query_scans_a_whole_table(backend: Backend) {
    with_app(backend, async |app| {
        // Enough chats and items, spread over users, that a full scan would be a real choice
        // for the planner (on a table of a few pages it rightly prefers one).
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
        app.db.connection().execute_unprepared("ANALYZE").await.unwrap();

        let plans = app.db.query_plans().await.unwrap();
        assert!(plans.len() >= 2, "every query is planned: {plans:?}");
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

dual_backend_tests!(no_list_or_page_query_scans_a_whole_table);
