//! Each ChatKit protocol step that writes several rows is one transaction or one statement:
//! with the database refusing one row part-way, nothing of the step is kept.

use chatstore_tests::{Backend, TestApp, dual_backend_tests, with_app};
use repositories::chatkit::Store;
use sea_orm::ConnectionTrait;
use serde_json::{Value, json};

use crate::chatkit_stream::{input, stored_items, stream};

/// Makes the database refuse to `operation` (`INSERT` or `DELETE`) any ChatKit item whose
/// text contains "boom", so that a step fails at that row.
async fn refuse_boom_items(app: &TestApp, operation: &str) {
    let statements = match app.db.backend() {
        repositories::Backend::Sqlite => {
            let row = if operation == "DELETE" { "OLD" } else { "NEW" };
            vec![format!(
                "CREATE TRIGGER refuse_boom BEFORE {operation} ON chatkit_items \
                 WHEN {row}.data LIKE '%boom%' BEGIN SELECT RAISE(ABORT, 'boom refused'); END"
            )]
        }
        repositories::Backend::Postgres => {
            let (row, returned) =
                if operation == "DELETE" { ("OLD", "OLD") } else { ("NEW", "NEW") };
            vec![
                format!(
                    "CREATE FUNCTION refuse_boom() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
                     IF {row}.data LIKE '%boom%' THEN RAISE EXCEPTION 'boom refused'; END IF; \
                     RETURN {returned}; END $$"
                ),
                format!(
                    "CREATE TRIGGER refuse_boom BEFORE {operation} ON chatkit_items \
                     FOR EACH ROW EXECUTE FUNCTION refuse_boom()"
                ),
            ]
        }
    };
    for statement in statements {
        app.db.connection().execute_unprepared(&statement).await.unwrap();
    }
}

/// A thread of Alice's holding `items` (each with at least `id` and `type`), in that order.
async fn thread_of_items(app: &TestApp, items: &[Value]) -> String {
    let store = app.db.chatkit();
    let thread = json!({"id": "thr_steps", "created_at": "2025-10-06T12:00:00", "title": null});
    store.save_thread(&thread.to_string(), "alice").await.unwrap();
    for (n, item) in items.iter().enumerate() {
        let mut item = item.clone();
        item["thread_id"] = json!("thr_steps");
        item["created_at"] = json!(format!("2025-10-06T12:00:{n:02}"));
        store.add_thread_item("thr_steps", &item.to_string(), "alice").await.unwrap();
    }
    "thr_steps".to_owned()
}

fn user_message(id: &str, text: &str) -> Value {
    json!({"id": id, "type": "user_message", "content": [{"type": "input_text", "text": text}],
        "attachments": [], "quoted_text": null, "inference_options": {}})
}

fn answer(id: &str, text: &str) -> Value {
    json!({"id": id, "type": "assistant_message",
        "content": [{"annotations": [], "text": text, "type": "output_text"}]})
}

fn pending_call(id: &str) -> Value {
    json!({"id": id, "type": "client_tool_call", "status": "pending", "call_id": format!("call_{id}"),
        "name": "get_selection", "arguments": {}, "output": null})
}

async fn retry_after_item_deletes_all_newer_items_or_none(backend: Backend) {
    with_app(backend, async |app| {
        let items = [
            user_message("msg_q", "Question"),
            answer("msg_a1", "first"),
            answer("msg_a2", "boom"),
            answer("msg_a3", "third"),
        ];
        let thread = thread_of_items(app, &items).await;
        let before = stored_items(app, "alice", &thread).await;
        refuse_boom_items(app, "DELETE").await;

        let retry = json!({"type": "threads.retry_after_item",
            "params": {"thread_id": thread, "item_id": "msg_q"}});
        let (status, _) = stream(app, "alice", retry.clone()).await;
        assert_eq!(status, 500, "the refused delete fails the step");
        assert_eq!(stored_items(app, "alice", &thread).await, before, "no newer item went");

        // Without the refusal, every newer item goes at once and the question is answered again.
        let drop = match app.db.backend() {
            repositories::Backend::Sqlite => "DROP TRIGGER refuse_boom",
            repositories::Backend::Postgres => "DROP TRIGGER refuse_boom ON chatkit_items",
        };
        app.db.connection().execute_unprepared(drop).await.unwrap();
        let (status, _) = stream(app, "alice", retry).await;
        assert_eq!(status, 200);
        let after = stored_items(app, "alice", &thread).await;
        assert_eq!(after[0], before[0]);
        assert_eq!(after.len(), 2, "the question and its new answer: {after:?}");
        assert_eq!(after[1]["content"][0]["text"], "Question");
    })
    .await;
}

async fn client_tool_output_completes_and_drops_in_one_transaction(backend: Backend) {
    with_app(backend, async |app| {
        let mut old_call = pending_call("tc_old");
        old_call["arguments"] = json!({"note": "boom"});
        let items = [user_message("msg_q", "Select"), old_call, pending_call("tc_new")];
        let thread = thread_of_items(app, &items).await;
        let before = stored_items(app, "alice", &thread).await;
        refuse_boom_items(app, "DELETE").await;

        let output = json!({"type": "threads.add_client_tool_output",
            "params": {"thread_id": thread, "result": {"ok": true}}});
        let (status, _) = stream(app, "alice", output).await;
        assert_eq!(status, 500, "the refused delete of the older call fails the step");
        let after = stored_items(app, "alice", &thread).await;
        assert_eq!(after, before, "the newest call is still pending and nothing went");
        assert_eq!(after[2]["status"], "pending");
    })
    .await;
}

async fn a_user_message_and_its_attachments_are_stored_together_or_not_at_all(backend: Backend) {
    with_app(backend, async |app| {
        let thread = thread_of_items(app, &[user_message("msg_q", "Hello")]).await;
        let attachment = json!({"id": "atc_1", "type": "file", "name": "notes.txt",
            "mime_type": "text/plain", "thread_id": null});
        let store = app.db.chatkit();
        store.save_attachment(&attachment.to_string(), "alice").await.unwrap();
        let before = stored_items(app, "alice", &thread).await;
        refuse_boom_items(app, "INSERT").await;

        let mut message = input("boom");
        message["attachments"] = json!(["atc_1"]);
        let add = json!({"type": "threads.add_user_message",
            "params": {"thread_id": thread, "input": message}});
        let (status, _) = stream(app, "alice", add).await;
        assert_eq!(status, 500, "the refused message fails the step");
        assert_eq!(stored_items(app, "alice", &thread).await, before, "no message was stored");
        let stored: Value =
            serde_json::from_str(&store.load_attachment("atc_1", "alice").await.unwrap().json)
                .unwrap();
        assert_eq!(stored["thread_id"], Value::Null, "the attachment was not sent either");

        // A message that is stored takes its attachment along.
        let mut message = input("fine");
        message["attachments"] = json!(["atc_1"]);
        let add = json!({"type": "threads.add_user_message",
            "params": {"thread_id": thread, "input": message}});
        assert_eq!(stream(app, "alice", add).await.0, 200);
        let stored: Value =
            serde_json::from_str(&store.load_attachment("atc_1", "alice").await.unwrap().json)
                .unwrap();
        assert_eq!(stored["thread_id"], json!(thread));
        assert_eq!(stored_items(app, "alice", &thread).await[1]["attachments"][0]["id"], "atc_1");
    })
    .await;
}

dual_backend_tests!(
    retry_after_item_deletes_all_newer_items_or_none,
    client_tool_output_completes_and_drops_in_one_transaction,
    a_user_message_and_its_attachments_are_stored_together_or_not_at_all,
);
