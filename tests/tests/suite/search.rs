//! `GET /search`: every write path keeps the index in step (checked through HTTP and in the
//! index table), tenancy, soft-deleted chats, matching rules, ranking and snippets, paging
//! through ties, bad input, and `search.enabled`.

use std::collections::BTreeSet;

use std::time::{Duration, Instant};

use chatstore_tests::{Answer, Backend, TestApp, dual_backend_tests, with_app, with_database};
use repositories::sea_orm::{ConnectionTrait, Statement};
use reqwest::Method;
use serde_json::{Value, json};

/// A page of `user`'s hits for the query string `query` (already URL-encoded).
async fn search(app: &TestApp, user: &str, query: &str) -> Value {
    let answer = app.get(&format!("/search?{query}"), user).await;
    assert_eq!(answer.status, 200, "{query}: {}", answer.text);
    answer.json()
}

/// The hits of a page as `(kind, conversation_id, item_ref)`.
fn hits(page: &Value) -> Vec<(String, String, Value)> {
    page["data"]
        .as_array()
        .expect("a page has data")
        .iter()
        .map(|hit| {
            (
                hit["kind"].as_str().unwrap().to_owned(),
                hit["conversation_id"].as_str().unwrap().to_owned(),
                hit["item_ref"].clone(),
            )
        })
        .collect()
}

/// `user`'s hits for the single word `word`.
async fn found(app: &TestApp, user: &str, word: &str) -> Vec<(String, String, Value)> {
    hits(&search(app, user, &format!("q={word}&include_inactive=true")).await)
}

fn session_hit(chat: &str, position: i64) -> (String, String, Value) {
    ("session".into(), chat.into(), json!({ "position": position }))
}

fn title_hit(kind: &str, conversation: &str) -> (String, String, Value) {
    (kind.into(), conversation.into(), Value::Null)
}

fn thread_hit(thread: &str, item: &str) -> (String, String, Value) {
    ("thread".into(), thread.into(), json!({ "item_id": item }))
}

async fn entries(app: &TestApp, user: &str) -> i64 {
    app.db.search().entry_count(user).await.unwrap()
}

/// `user`'s entries in the index table as they are, without indexing what waits first (as
/// [`entries`] and every search do).
async fn stored_entries(app: &TestApp, user: &str) -> i64 {
    count_of(app, "SELECT count(*) AS n FROM search_entries WHERE user_id = $1", user).await
}

/// The count `n` that `sql` answers for `user` (`$1`), read directly from the database.
async fn count_of(app: &TestApp, sql: &str, user: &str) -> i64 {
    let statement = Statement::from_sql_and_values(app.db.db_backend(), sql, [user.into()]);
    let row = app.db.connection().query_one_raw(statement).await.unwrap().unwrap();
    row.try_get::<i64>("", "n").unwrap()
}

/// A chat's search mark and last position.
async fn search_mark(app: &TestApp, user: &str, chat: &str) -> (i64, i64) {
    let statement = Statement::from_sql_and_values(
        app.db.db_backend(),
        "SELECT search_indexed AS mark, position_base + item_count AS top FROM chats \
         WHERE user_id = $1 AND chat_id = $2",
        [user.into(), chat.into()],
    );
    let row = app.db.connection().query_one_raw(statement).await.unwrap().unwrap();
    (row.try_get::<i64>("", "mark").unwrap(), row.try_get::<i64>("", "top").unwrap())
}

async fn append(app: &TestApp, user: &str, session: &str, items: Value) {
    let body = json!({ "items": items }).to_string();
    let answer = app.post(&format!("/sessions/{session}/items"), user, &body).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
}

async fn put(app: &TestApp, path: &str, user: &str, body: &Value) -> Answer {
    app.send(Method::PUT, path, user, Some(&body.to_string())).await
}

fn thread(id: &str, title: Option<&str>) -> Value {
    json!({"id": id, "title": title, "created_at": "2025-10-06T12:00:00Z",
           "status": {"type": "active"}, "metadata": {}})
}

fn user_message(id: &str, thread: &str, text: &str) -> Value {
    json!({"id": id, "thread_id": thread, "created_at": "2025-10-06T12:00:01Z",
           "type": "user_message", "content": [{"type": "input_text", "text": text}],
           "attachments": [], "inference_options": {}})
}

async fn session_writes_keep_the_index_in_step(backend: Backend) {
    with_app(backend, async |app| {
        // Append: a string `content`, then parts (only the text parts count).
        append(app, "alice", "s", json!([{"role": "user", "content": "where do zebras sleep"}]))
            .await;
        append(
            app,
            "alice",
            "s",
            json!([{"type": "message", "role": "assistant", "content": [
                {"type": "output_text", "text": "zebras sleep standing", "annotations": []},
                {"type": "refusal", "refusal": "giraffe"}]},
                {"type": "function_call", "call_id": "c", "name": "zebra_lookup", "arguments": "{}"}]),
        )
        .await;
        assert_eq!(found(app, "alice", "zebras").await.len(), 2);
        assert_eq!(found(app, "alice", "standing").await, [session_hit("s", 2)]);
        assert!(found(app, "alice", "giraffe").await.is_empty(), "refusals are not text");
        assert!(found(app, "alice", "zebra_lookup").await.is_empty(), "nor tool calls");
        assert_eq!(entries(app, "alice").await, 2);

        // Pop: the newest item (the tool call, not indexed), then the answer.
        for _ in 0..2 {
            let popped = app.post("/sessions/s/pop", "alice", "").await;
            assert_eq!(popped.status, 200, "{}", popped.text);
        }
        assert!(found(app, "alice", "standing").await.is_empty());
        assert_eq!(found(app, "alice", "zebras").await, [session_hit("s", 1)]);
        assert_eq!(entries(app, "alice").await, 1);
        // A new item at the popped position is the new text only.
        append(app, "alice", "s", json!([{"role": "user", "content": "okapi"}])).await;
        assert_eq!(found(app, "alice", "okapi").await, [session_hit("s", 2)]);

        // Clear: every item goes.
        let cleared = app.delete("/sessions/s/items", "alice").await;
        assert_eq!(cleared.status, 204, "{}", cleared.text);
        assert!(found(app, "alice", "zebras").await.is_empty());
        assert!(found(app, "alice", "okapi").await.is_empty());
        assert_eq!(entries(app, "alice").await, 0);

        // A title, its change, and a replaced conversation.
        let body = json!({"title": "Safari plans", "conversation": [{"role": "user", "content": "lions"}]});
        assert_eq!(put(app, "/chats/s", "alice", &body).await.status, 200);
        assert_eq!(found(app, "alice", "safari").await, [title_hit("session", "s")]);
        assert_eq!(found(app, "alice", "lions").await, [session_hit("s", 1)]);
        let body = json!({"title": "Beach plans", "conversation": [{"role": "user", "content": "waves"}]});
        assert_eq!(put(app, "/chats/s", "alice", &body).await.status, 200);
        assert!(found(app, "alice", "safari").await.is_empty());
        assert!(found(app, "alice", "lions").await.is_empty());
        assert_eq!(found(app, "alice", "beach").await, [title_hit("session", "s")]);
        assert_eq!(found(app, "alice", "waves").await, [session_hit("s", 1)]);
        assert_eq!(put(app, "/chats/s", "alice", &json!({"title": null})).await.status, 200);
        assert!(found(app, "alice", "beach").await.is_empty());
        assert_eq!(entries(app, "alice").await, 1);

        // A chat made with a title and items, then deleted for good.
        let body = json!({"chat_id": "c2", "title": "Waves report",
                          "conversation": [{"role": "user", "content": "big waves"}]});
        assert_eq!(app.post("/chats", "alice", &body.to_string()).await.status, 201);
        assert_eq!(found(app, "alice", "waves").await.len(), 3);
        let deleted = app.delete("/chats/c2?hard=true", "alice").await;
        assert_eq!(deleted.status, 204, "{}", deleted.text);
        assert_eq!(found(app, "alice", "waves").await, [session_hit("s", 1)]);
        assert_eq!(entries(app, "alice").await, 1);
    })
    .await;
}

async fn thread_writes_keep_the_index_in_step(backend: Backend) {
    with_app(backend, async |app| {
        let created = put(app, "/threads/t1", "alice", &thread("t1", Some("Trip to Lisbon"))).await;
        assert_eq!(created.status, 200, "{}", created.text);
        assert_eq!(found(app, "alice", "lisbon").await, [title_hit("thread", "t1")]);

        let item = user_message("i1", "t1", "book a tram ticket");
        let added = app.post("/threads/t1/items", "alice", &item.to_string()).await;
        assert_eq!(added.status, 201, "{}", added.text);
        assert_eq!(found(app, "alice", "tram").await, [thread_hit("t1", "i1")]);

        // Saving the item again with new text replaces its entry.
        let item = user_message("i1", "t1", "book a ferry ticket");
        let saved = put(app, "/threads/t1/items/i1", "alice", &item).await;
        assert_eq!(saved.status, 200, "{}", saved.text);
        assert!(found(app, "alice", "tram").await.is_empty());
        assert_eq!(found(app, "alice", "ferry").await, [thread_hit("t1", "i1")]);

        // A new title replaces the old one.
        let renamed = put(app, "/threads/t1", "alice", &thread("t1", Some("Trip to Porto"))).await;
        assert_eq!(renamed.status, 200, "{}", renamed.text);
        assert!(found(app, "alice", "lisbon").await.is_empty());
        assert_eq!(found(app, "alice", "porto").await, [title_hit("thread", "t1")]);

        let deleted = app.delete("/threads/t1/items/i1", "alice").await;
        assert_eq!(deleted.status, 204, "{}", deleted.text);
        assert!(found(app, "alice", "ferry").await.is_empty());

        let item = user_message("i2", "t1", "pastel de nata");
        assert_eq!(app.post("/threads/t1/items", "alice", &item.to_string()).await.status, 201);
        assert_eq!(entries(app, "alice").await, 2);
        let deleted = app.delete("/threads/t1", "alice").await;
        assert_eq!(deleted.status, 204, "{}", deleted.text);
        assert!(found(app, "alice", "nata").await.is_empty());
        assert!(found(app, "alice", "porto").await.is_empty());
        assert_eq!(entries(app, "alice").await, 0);
    })
    .await;
}

async fn another_users_text_is_never_found(backend: Backend) {
    with_app(backend, async |app| {
        append(app, "alice", "same", json!([{"role": "user", "content": "alice secret plan"}]))
            .await;
        let body = json!({"chat_id": "c", "title": "secret title"});
        assert_eq!(app.post("/chats", "alice", &body.to_string()).await.status, 201);
        assert_eq!(
            put(app, "/threads/t", "alice", &thread("t", Some("secret thread"))).await.status,
            200
        );
        assert_eq!(found(app, "alice", "secret").await.len(), 3);

        assert!(found(app, "bob", "secret").await.is_empty());
        assert!(found(app, "bob", "sec").await.is_empty());
        // Bob's own chat of the same id holds his words only.
        append(app, "bob", "same", json!([{"role": "user", "content": "bob secret"}])).await;
        let page = search(app, "bob", "q=secret").await;
        assert_eq!(hits(&page), [session_hit("same", 1)]);
        assert!(page["data"][0]["snippet"].as_str().unwrap().contains("bob"));
        assert_eq!(found(app, "alice", "secret").await.len(), 3);
        assert_eq!(entries(app, "bob").await, 1);
    })
    .await;
}

async fn soft_deleted_chats_are_left_out_unless_asked(backend: Backend) {
    with_app(backend, async |app| {
        append(app, "alice", "kept", json!([{"role": "user", "content": "marmalade"}])).await;
        append(app, "alice", "gone", json!([{"role": "user", "content": "marmalade toast"}])).await;
        assert_eq!(
            put(app, "/threads/t", "alice", &thread("t", Some("marmalade"))).await.status,
            200
        );
        assert_eq!(app.delete("/chats/gone", "alice").await.status, 204);

        let active = hits(&search(app, "alice", "q=marmalade").await);
        assert_eq!(active.len(), 2);
        assert!(!active.contains(&session_hit("gone", 1)));
        let all = hits(&search(app, "alice", "q=marmalade&include_inactive=true").await);
        assert_eq!(all.len(), 3);
        assert!(all.contains(&session_hit("gone", 1)));
        // Soft delete keeps the entries; restoring brings the hit back.
        assert_eq!(entries(app, "alice").await, 3);
        assert_eq!(put(app, "/chats/gone", "alice", &json!({"is_active": true})).await.status, 200);
        assert_eq!(hits(&search(app, "alice", "q=marmalade").await).len(), 3);

        // `kind` narrows to chats or threads.
        let sessions = hits(&search(app, "alice", "q=marmalade&kind=sessions").await);
        assert!(sessions.iter().all(|(kind, _, _)| kind == "session"));
        assert_eq!(sessions.len(), 2);
        assert_eq!(
            hits(&search(app, "alice", "q=marmalade&kind=threads").await),
            [title_hit("thread", "t")]
        );
    })
    .await;
}

async fn matching_ignores_case_and_accents_and_the_last_word_is_a_prefix(backend: Backend) {
    with_app(backend, async |app| {
        let text = "Crème BRÛLÉE at the Café, see example.com";
        append(app, "alice", "s", json!([{"role": "user", "content": text}])).await;
        let one = [session_hit("s", 1)];
        for query in [
            "creme",
            "CRÈME",
            "creme%20brulee",
            "brulee%20creme",
            "cafe",
            "caf",
            "creme%20bru",
            "example.com",
            "example.co",
        ] {
            assert_eq!(found(app, "alice", query).await, one, "{query}");
        }
        // Only the last word is a prefix; every word must match.
        for query in ["cre%20brulee", "creme%20custard", "brul%C3%A9es"] {
            assert!(found(app, "alice", query).await.is_empty(), "{query}");
        }
        let hit = &search(app, "alice", "q=cafe").await["data"][0];
        assert_eq!(hit["snippet"].as_str().unwrap().trim(), text);
        assert_eq!(hit["title"], Value::Null);
        assert!(hit["score"].as_f64().unwrap() > 0.0);
        assert!(hit["created_at"].as_str().unwrap().ends_with('Z'));

        // Text without spaces is one word per run: found by the run's start, not its middle.
        append(app, "alice", "jp", json!([{"role": "user", "content": "東京タワーに行った"}]))
            .await;
        assert_eq!(found(app, "alice", "東京").await, [session_hit("jp", 1)]);
        assert_eq!(found(app, "alice", "東京タワーに行った").await, [session_hit("jp", 1)]);
        assert!(found(app, "alice", "タワー").await.is_empty());

        // Escaped NUL and a lone surrogate are valid JSON that some databases refuse: the
        // write still succeeds, and the rest of the text is found.
        let raw =
            r#"{"items": [{"role": "user", "content": "nul\u0000here and \ud800 lone, wombat"}]}"#;
        let answer = app.post("/sessions/odd/items", "alice", raw).await;
        assert_eq!(answer.status, 200, "{}", answer.text);
        assert_eq!(found(app, "alice", "wombat").await, [session_hit("odd", 1)]);
    })
    .await;
}

async fn ranking_and_snippets_are_sensible(backend: Backend) {
    with_app(backend, async |app| {
        let filler = "the weather was mild and the road was long ".repeat(40);
        let long = format!("{filler} we finally found a quince tree {filler}");
        append(
            app,
            "alice",
            "s",
            json!([{"role": "user", "content": long}, {"role": "user", "content": "quince quince jam"}]),
        )
        .await;
        let page = search(app, "alice", "q=quince").await;
        // The short text about quinces comes before the long one that mentions them once.
        assert_eq!(hits(&page), [session_hit("s", 2), session_hit("s", 1)]);
        let scores: Vec<f64> =
            page["data"].as_array().unwrap().iter().map(|h| h["score"].as_f64().unwrap()).collect();
        assert!(scores[0] > scores[1], "{scores:?}");
        // The long text's snippet is an excerpt around the word.
        let snippet = page["data"][1]["snippet"].as_str().unwrap();
        assert!(snippet.contains("quince"), "{snippet}");
        assert!(snippet.len() < 400, "{snippet}");
    })
    .await;
}

async fn paging_never_skips_or_repeats_a_hit(backend: Backend) {
    with_app(backend, async |app| {
        // 23 items that score exactly the same, and 4 better ones (shorter), in three chats.
        for chat in ["a", "b", "c"] {
            let items: Vec<Value> = (0..9)
                .map(|n| json!({"role": "user", "content": format!("tie tie {chat} and filler words {n}")}))
                .collect();
            append(app, "alice", chat, json!(items)).await;
        }
        append(app, "alice", "d", json!([{"role": "user", "content": "tie"}])).await;
        let mut seen = Vec::new();
        let mut after: Option<String> = None;
        let mut pages = 0;
        loop {
            let query = match &after {
                Some(after) => format!("q=tie&limit=4&after={after}"),
                None => "q=tie&limit=4".to_owned(),
            };
            let page = search(app, "alice", &query).await;
            pages += 1;
            let data = hits(&page);
            assert!(data.len() <= 4);
            seen.extend(data);
            if page["has_more"] == true {
                after = Some(page["after"].as_str().unwrap().to_owned());
            } else {
                assert_eq!(page["after"], Value::Null);
                break;
            }
        }
        assert_eq!(pages, 7);
        assert_eq!(seen.len(), 28, "no hit repeated");
        assert_eq!(seen[0], session_hit("d", 1), "the best first");
        let distinct: BTreeSet<String> = seen.iter().map(|hit| format!("{hit:?}")).collect();
        assert_eq!(distinct.len(), 28, "no hit skipped");
    })
    .await;
}

async fn bad_input_is_a_400_and_no_token_a_401(backend: Backend) {
    with_app(backend, async |app| {
        append(app, "alice", "s", json!([{"role": "user", "content": "hello"}])).await;
        let too_long = "x".repeat(1001);
        for query in [
            String::new(),
            "q=".into(),
            "q=%20%20".into(),
            "q=%21%3F".into(),
            "q=a%00b".into(),
            format!("q={too_long}"),
            "q=hello&kind=chats".into(),
            "q=hello&limit=0".into(),
            "q=hello&limit=101".into(),
            "q=hello&limit=x".into(),
            "q=hello&include_inactive=maybe".into(),
            "q=hello&after=".into(),
            "q=hello&after=bogus".into(),
            "q=hello&after=s7ff8000000000000.1".into(),
        ] {
            app.get(&format!("/search?{query}"), "alice")
                .await
                .assert_error(400, "invalid_request");
        }
        let anonymous = app.client.get(app.url("/search?q=hello")).send().await.unwrap();
        Answer::read(anonymous).await.assert_error(401, "unauthorized");
        // The limits' edges are fine.
        assert_eq!(
            search(app, "alice", &format!("q={}", "x".repeat(1000))).await["data"],
            json!([])
        );
        assert_eq!(hits(&search(app, "alice", "q=hello&limit=100").await), [session_hit("s", 1)]);
    })
    .await;
}

async fn search_can_be_switched_off_and_on(backend: Backend) {
    with_database(backend, async |database| {
        let mut app = TestApp::spawn(database, |settings| settings.search.enabled = false).await;
        append(&app, "alice", "s", json!([{"role": "user", "content": "offline words"}])).await;
        let body = json!({"chat_id": "c", "title": "offline title"});
        assert_eq!(app.post("/chats", "alice", &body.to_string()).await.status, 201);
        assert_eq!(
            put(&app, "/threads/t", "alice", &thread("t", Some("offline thread"))).await.status,
            200
        );
        assert_eq!(entries(&app, "alice").await, 0, "nothing indexed");
        app.get("/search?q=offline", "alice").await.assert_error(404, "not_found");
        app.stop().await.unwrap();

        // Switched on: the index is rebuilt from what was written meanwhile.
        let mut app = TestApp::spawn(database, |_| {}).await;
        assert_eq!(entries(&app, "alice").await, 3);
        let all = found(&app, "alice", "offline").await;
        assert_eq!(all.len(), 3);
        assert!(all.contains(&session_hit("s", 1)));
        assert!(all.contains(&title_hit("session", "c")));
        assert!(all.contains(&title_hit("thread", "t")));
        app.stop().await.unwrap();

        // Off again: the index is emptied rather than left to go stale.
        let mut app = TestApp::spawn(database, |settings| settings.search.enabled = false).await;
        assert_eq!(entries(&app, "alice").await, 0);
        app.stop().await.unwrap();
    })
    .await;
}

/// Appends are indexed after they commit, by the server in the background: the entries
/// appear without any search asking for them, and the chat's mark reaches its last position.
async fn appended_items_are_indexed_in_the_background(backend: Backend) {
    with_database(backend, async |database| {
        let mut app =
            TestApp::spawn(database, |settings| settings.search.index_interval_ms = 20).await;
        for n in 0..5 {
            append(&app, "alice", "s", json!([{"role": "user", "content": format!("kiwi {n}")}]))
                .await;
        }
        wait_for_stored_entries(&app, "alice", 5).await;
        assert_eq!(stored_entries(&app, "alice").await, 5);
        assert_eq!(search_mark(&app, "alice", "s").await, (5, 5));
        app.stop().await.unwrap();
    })
    .await;
}

/// The background batches the server has run, from `/metrics`.
async fn index_batches(app: &TestApp) -> u64 {
    let answer = Answer::read(app.client.get(app.url("/metrics")).send().await.unwrap()).await;
    assert_eq!(answer.status, 200);
    let line = answer.text.lines().find(|line| line.starts_with("chatstore_search_index_batches"));
    line.and_then(|line| line.split(' ').nth(1)).unwrap().parse().unwrap()
}

/// Waits until `user` has `wanted` entries in the index table, failing after 20 s.
async fn wait_for_stored_entries(app: &TestApp, user: &str, wanted: i64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while stored_entries(app, user).await < wanted {
        assert!(Instant::now() < deadline, "the background indexer never indexed the write");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until the indexer has run no batch for ten of its intervals, and answers how many
/// it ran; fails after 20 s.
async fn wait_until_idle(app: &TestApp) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut before = index_batches(app).await;
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = index_batches(app).await;
        if now == before {
            return now;
        }
        assert!(Instant::now() < deadline, "the background indexer never went idle");
        before = now;
    }
}

/// With nothing written, the background indexer sends the database nothing (a serverless
/// one can then scale to zero); a session append or a thread item wakes it, and what they
/// wrote is indexed without a search asking for it.
async fn an_idle_indexer_sleeps_until_a_write_wakes_it(backend: Backend) {
    with_database(backend, async |database| {
        let mut app =
            TestApp::spawn(database, |settings| settings.search.index_interval_ms = 20).await;
        assert_eq!(put(&app, "/threads/t", "alice", &thread("t", None)).await.status, 200);
        let idle = wait_until_idle(&app).await;
        assert!(idle >= 1, "the batch at start ran");
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(index_batches(&app).await, idle, "no batch while nothing is written");

        append(&app, "alice", "s", json!([{"role": "user", "content": "kiwi"}])).await;
        wait_for_stored_entries(&app, "alice", 1).await;
        let idle = wait_until_idle(&app).await;

        let item = user_message("i1", "t", "book a tram ticket");
        assert_eq!(app.post("/threads/t/items", "alice", &item.to_string()).await.status, 201);
        wait_for_stored_entries(&app, "alice", 2).await;
        assert!(wait_until_idle(&app).await > idle, "the thread item woke the indexer");
        assert_eq!(found(&app, "alice", "tram").await, [thread_hit("t", "i1")]);
        app.stop().await.unwrap();
    })
    .await;
}

/// A background batch takes at most 64 chats and says when more are waiting; the next takes
/// the rest. Long ranges are taken whole (up to 5,000 items a chat).
async fn a_background_batch_takes_64_chats_and_the_next_the_rest(backend: Backend) {
    with_app(backend, async |app| {
        for chat in 0..70 {
            let item = json!([{"role": "user", "content": format!("otter {chat}")}]);
            append(app, "alice", &format!("s{chat:02}"), item).await;
        }
        let first = app.db.search_index().index_batch().await.unwrap();
        assert_eq!((first.chats, first.entries, first.more_waiting), (64, 64, true));
        let second = app.db.search_index().index_batch().await.unwrap();
        assert_eq!((second.chats, second.entries, second.more_waiting), (6, 6, false));
        assert_eq!(stored_entries(app, "alice").await, 70);
        for chat in ["s00", "s07", "s08", "s63", "s64", "s69"] {
            assert_eq!(search_mark(app, "alice", chat).await, (1, 1), "{chat}");
        }
        assert!(!app.db.search_index().index_batch().await.unwrap().indexed_any());

        for chat in ["big1", "big2", "big3"] {
            let items: Vec<Value> = (0..300)
                .map(|n| json!({"role": "user", "content": format!("heron {n}")}))
                .collect();
            append(app, "alice", chat, Value::Array(items)).await;
        }
        let big = app.db.search_index().index_batch().await.unwrap();
        assert_eq!((big.chats, big.entries, big.more_waiting), (3, 900, false));
        for chat in ["big1", "big2", "big3"] {
            assert_eq!(search_mark(app, "alice", chat).await, (300, 300), "{chat}");
        }
    })
    .await;
}

/// With the background indexer idle, a search still sees every earlier append: it indexes
/// its user's waiting items first, and only its user's.
async fn a_search_indexes_its_users_waiting_items_first(backend: Backend) {
    with_database(backend, async |database| {
        let mut app =
            TestApp::spawn(database, |settings| settings.search.index_interval_ms = 3_600_000)
                .await;
        append(&app, "alice", "s", json!([{"role": "user", "content": "quokka"}])).await;
        append(&app, "bob", "s", json!([{"role": "user", "content": "quokka"}])).await;
        assert_eq!(stored_entries(&app, "alice").await, 0, "nothing indexed yet");
        assert_eq!(search_mark(&app, "alice", "s").await, (0, 1));
        assert_eq!(found(&app, "alice", "quokka").await, [session_hit("s", 1)]);
        assert_eq!(stored_entries(&app, "alice").await, 1);
        assert_eq!(search_mark(&app, "alice", "s").await, (1, 1));
        assert_eq!(stored_entries(&app, "bob").await, 0, "another user's waits for the background");

        // A popped item's position, reused, holds the new text only, and the mark follows.
        assert_eq!(app.post("/sessions/s/pop", "alice", "").await.status, 200);
        assert_eq!(search_mark(&app, "alice", "s").await, (0, 0));
        append(&app, "alice", "s", json!([{"role": "user", "content": "wombat"}])).await;
        assert!(found(&app, "alice", "quokka").await.is_empty());
        assert_eq!(found(&app, "alice", "wombat").await, [session_hit("s", 1)]);
        app.stop().await.unwrap();
    })
    .await;
}

/// Many clients appending while the background indexes: every item ends up indexed exactly
/// once, whichever of the background and the search's catch-up took it.
async fn concurrent_appends_are_each_indexed_once(backend: Backend) {
    with_database(backend, async |database| {
        let mut app =
            TestApp::spawn(database, |settings| settings.search.index_interval_ms = 5).await;
        let writers = (0..6).map(|writer| {
            let app = &app;
            async move {
                for n in 0..10 {
                    let text = format!("panda writer{writer} n{n}");
                    let session = format!("s{}", writer % 2);
                    append(app, "alice", &session, json!([{"role": "user", "content": text}]))
                        .await;
                }
            }
        });
        futures::future::join_all(writers).await;
        assert_eq!(entries(&app, "alice").await, 60);
        let page = search(&app, "alice", "q=panda&limit=100").await;
        assert_eq!(hits(&page).len(), 60);
        for session in ["s0", "s1"] {
            assert_eq!(search_mark(&app, "alice", session).await, (30, 30));
        }
        let statement = Statement::from_string(
            app.db.db_backend(),
            "SELECT count(*) AS n FROM (SELECT DISTINCT conversation_id, item_key \
             FROM search_entries WHERE user_id = 'alice') AS keys",
        );
        let row = app.db.connection().query_one_raw(statement).await.unwrap().unwrap();
        assert_eq!(row.try_get::<i64>("", "n").unwrap(), 60);
        app.stop().await.unwrap();
    })
    .await;
}

/// `user`'s session entries that do not match an item's text (stale, or left by a removed
/// item), and items with text that have no entry.
async fn index_mismatches(app: &TestApp, user: &str) -> (i64, i64) {
    let wrong = count_of(
        app,
        "SELECT count(*) AS n FROM search_entries e
         LEFT JOIN session_item_search_texts t ON t.user_id = e.user_id
          AND t.chat_id = e.conversation_id AND CAST(t.position AS TEXT) = e.item_key
         WHERE e.user_id = $1 AND e.kind = 'session' AND e.item_key <> ''
           AND (t.body IS NULL OR t.body <> e.body)",
        user,
    )
    .await;
    let missing = count_of(
        app,
        "SELECT count(*) AS n FROM session_item_search_texts t
         LEFT JOIN search_entries e ON e.user_id = t.user_id AND e.kind = 'session'
          AND e.conversation_id = t.chat_id AND e.item_key = CAST(t.position AS TEXT)
         WHERE t.user_id = $1 AND t.body <> '' AND e.item_key IS NULL",
        user,
    )
    .await;
    (wrong, missing)
}

/// Appends, pops and clears from several clients while the background indexes every few
/// milliseconds: once it has caught up, the index holds exactly the items there are, with
/// their current text (popped positions are reused with new text), and every mark is at its
/// chat's last position.
async fn the_index_matches_the_items_after_concurrent_writes_and_removals(backend: Backend) {
    with_database(backend, async |database| {
        let mut app =
            TestApp::spawn(database, |settings| settings.search.index_interval_ms = 2).await;
        let writers = (0..4).map(|writer| {
            let app = &app;
            async move {
                let session = format!("s{}", writer % 2);
                for n in 0..25 {
                    let text = format!("wren writer{writer} n{n}");
                    let items = json!([{"role": "user", "content": text},
                                       {"role": "assistant", "content": format!("{text} answered")}]);
                    append(app, "alice", &session, items).await;
                    if n % 3 == 0 {
                        let popped = app.post(&format!("/sessions/{session}/pop"), "alice", "").await;
                        assert_eq!(popped.status, 200, "{}", popped.text);
                    }
                    if n == 20 && writer < 2 {
                        let cleared =
                            app.delete(&format!("/sessions/{session}/items"), "alice").await;
                        assert_eq!(cleared.status, 204, "{}", cleared.text);
                    }
                }
            }
        });
        futures::future::join_all(writers).await;
        let deadline = Instant::now() + Duration::from_secs(30);
        for session in ["s0", "s1"] {
            loop {
                let (mark, top) = search_mark(&app, "alice", session).await;
                if mark == top {
                    break;
                }
                assert!(Instant::now() < deadline, "{session}: the mark stayed at {mark} of {top}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        assert_eq!(index_mismatches(&app, "alice").await, (0, 0));
        assert!(stored_entries(&app, "alice").await > 0);
        app.stop().await.unwrap();
    })
    .await;
}

/// A compaction that prunes items the index has not reached yet leaves no positions below the
/// chat's new base waiting: the mark rises to the base, and the background finishes the chat
/// in one batch (it marks a range only when it saw every position of it, and positions below
/// the base hold nothing).
async fn a_prune_past_the_mark_leaves_nothing_waiting_below_the_base(backend: Backend) {
    with_app(backend, async |app| {
        let items: Vec<Value> =
            (1..=6).map(|n| json!({"role": "user", "content": format!("ibis {n}")})).collect();
        append(app, "alice", "s", Value::Array(items)).await;
        assert_eq!(search_mark(app, "alice", "s").await, (0, 6), "the background is idle");
        let snapshot = app.get("/sessions/s/snapshot?limit=1", "alice").await;
        assert_eq!(snapshot.status, 200, "{}", snapshot.text);
        let body = json!({ "revision": snapshot.json()["revision"], "after_position": 6,
                           "prune_leading": 4, "items": [] });
        let replaced = app.post("/sessions/s/replace", "alice", &body.to_string()).await;
        assert_eq!(replaced.status, 200, "{}", replaced.text);
        assert_eq!(search_mark(app, "alice", "s").await, (4, 6), "raised to the base");

        let batch = app.db.search_index().index_batch().await.unwrap();
        assert_eq!((batch.chats, batch.entries), (1, 2));
        assert_eq!(search_mark(app, "alice", "s").await, (6, 6));
        assert_eq!(app.db.search_index().index_batch().await.unwrap().chats, 0);
        assert_eq!(index_mismatches(app, "alice").await, (0, 0));
    })
    .await;
}

/// One background batch, which must not wait for any lock a test holds: `waited` if it
/// does not return within 10 s.
async fn batch_without_waiting(app: &TestApp, waited: &str) -> repositories::IndexBatch {
    tokio::time::timeout(Duration::from_secs(10), app.db.search_index().index_batch())
        .await
        .expect(waited)
        .unwrap()
}

/// On PostgreSQL the background batch locks no chat, so appends never wait for it. With one
/// chat's row held (as an append in progress holds it) and an item of another held (as a
/// removal in progress holds it), a batch still returns, indexes what it could lock, and
/// leaves both marks where they were; once both are let go, the next batch finishes them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_background_batch_waits_for_no_append_and_skips_what_a_removal_holds() {
    use repositories::sea_orm::TransactionTrait;
    with_app(Backend::Postgres, async |app| {
        for session in ["s1", "s2"] {
            let items = json!([{"role": "user", "content": "heron one"},
                               {"role": "user", "content": "heron two"},
                               {"role": "user", "content": "heron three"}]);
            append(app, "alice", session, items).await;
        }
        let hold = async |sql: &str| {
            let txn = app.db.connection().begin().await.unwrap();
            txn.execute_unprepared(sql).await.unwrap();
            txn
        };
        let appending = hold(
            "SELECT 1 FROM chats WHERE user_id = 'alice' AND chat_id = 's1' FOR NO KEY UPDATE",
        )
        .await;
        let removing = hold(
            "SELECT 1 FROM conversation_items \
             WHERE user_id = 'alice' AND chat_id = 's2' AND position = 2 FOR UPDATE",
        )
        .await;
        let batch = batch_without_waiting(app, "the batch waited for a held chat or item").await;
        assert_eq!((batch.chats, batch.entries), (2, 5));
        assert_eq!(stored_entries(app, "alice").await, 5);
        assert_eq!(search_mark(app, "alice", "s1").await, (0, 3), "its row was busy");
        assert_eq!(search_mark(app, "alice", "s2").await, (0, 3), "an item was skipped");

        appending.rollback().await.unwrap();
        removing.rollback().await.unwrap();
        let batch = app.db.search_index().index_batch().await.unwrap();
        assert_eq!((batch.chats, batch.entries), (2, 6));
        assert_eq!(search_mark(app, "alice", "s1").await, (3, 3));
        assert_eq!(search_mark(app, "alice", "s2").await, (3, 3));
        assert_eq!(index_mismatches(app, "alice").await, (0, 0));
        assert_eq!(app.db.search_index().index_batch().await.unwrap().chats, 0);
    })
    .await;
}

/// With several servers on one PostgreSQL database, their background batches share the
/// waiting chats instead of all taking the same first ones. A first batch is held at its
/// first chat (an entry it must write is held by another transaction); a second,
/// meanwhile, takes the chats the first did not, and never waits for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_background_batches_take_different_chats() {
    use repositories::sea_orm::TransactionTrait;
    with_app(Backend::Postgres, async |app| {
        for chat in 0..70 {
            let item = json!([{"role": "user", "content": format!("otter {chat}")}]);
            append(app, "alice", &format!("s{chat:02}"), item).await;
        }
        let holder = app.db.connection().begin().await.unwrap();
        holder
            .execute_unprepared(
                "INSERT INTO search_entries (user_id, kind, conversation_id, item_key, body, created_at) \
                 VALUES ('alice', 'session', 's00', '1', 'held', now())",
            )
            .await
            .unwrap();
        let first = tokio::spawn({
            let db = app.db.clone();
            async move { db.search_index().index_batch().await.unwrap() }
        });
        let waiting_for_a_lock = async || {
            let sql = "SELECT count(*) AS n FROM pg_stat_activity \
                       WHERE datname = current_database() AND wait_event_type = 'Lock'";
            let statement = Statement::from_string(app.db.db_backend(), sql);
            let row = app.db.connection().query_one_raw(statement).await.unwrap().unwrap();
            row.try_get::<i64>("", "n").unwrap() > 0
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !waiting_for_a_lock().await {
            assert!(Instant::now() < deadline, "the first batch never reached the held entry");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        let second =
            batch_without_waiting(app, "the second batch waited for the chats the first held")
                .await;
        assert_eq!((second.chats, second.entries), (6, 6));
        for chat in ["s64", "s69"] {
            assert_eq!(search_mark(app, "alice", chat).await, (1, 1), "{chat}");
        }
        assert_eq!(search_mark(app, "alice", "s00").await, (0, 1), "the first batch's");

        holder.rollback().await.unwrap();
        let first = first.await.unwrap();
        assert_eq!((first.chats, first.entries), (64, 64));
        assert_eq!(stored_entries(app, "alice").await, 70);
        for chat in ["s00", "s63"] {
            assert_eq!(search_mark(app, "alice", chat).await, (1, 1), "{chat}");
        }
        assert!(!app.db.search_index().index_batch().await.unwrap().indexed_any());
    })
    .await;
}

/// `user`'s ChatKit thread items whose entry is wrong or missing on PostgreSQL: entries of
/// items that are gone or whose text differs, and items with text but no entry.
async fn thread_index_mismatches(app: &TestApp, user: &str) -> (i64, i64) {
    let wrong = count_of(
        app,
        "SELECT count(*) AS n FROM search_entries e
         LEFT JOIN chatkit_items i ON i.user_id = e.user_id
          AND i.thread_id = e.conversation_id AND i.item_id = e.item_key
         WHERE e.user_id = $1 AND e.kind = 'thread' AND e.item_key <> ''
           AND (i.item_id IS NULL OR chatstore_search_text(i.data) IS DISTINCT FROM e.body)",
        user,
    )
    .await;
    let missing = count_of(
        app,
        "SELECT count(*) AS n FROM chatkit_items i
         LEFT JOIN search_entries e ON e.user_id = i.user_id AND e.kind = 'thread'
          AND e.conversation_id = i.thread_id AND e.item_key = i.item_id
         WHERE i.user_id = $1 AND chatstore_search_text(i.data) <> '' AND e.item_key IS NULL",
        user,
    )
    .await;
    (wrong, missing)
}

async fn queued_rows(app: &TestApp, user: &str) -> i64 {
    count_of(app, "SELECT count(*) AS n FROM search_queue WHERE user_id = $1", user).await
}

/// On PostgreSQL a thread item's write only queues it; the background batch indexes what it
/// can lock, keeps the row of an item a delete holds (and never waits for it), drops the
/// entry of an item whose text is gone, and the row of an item deleted before it came.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_thread_items_are_indexed_in_batches_skipping_what_a_delete_holds() {
    use repositories::sea_orm::TransactionTrait;
    with_app(Backend::Postgres, async |app| {
        assert_eq!(put(app, "/threads/t1", "alice", &thread("t1", Some("Trip"))).await.status, 200);
        for (id, text) in [("i1", "tram one"), ("i2", "tram two"), ("i3", "tram three")] {
            let item = user_message(id, "t1", text);
            assert_eq!(app.post("/threads/t1/items", "alice", &item.to_string()).await.status, 201);
        }
        assert_eq!(queued_rows(app, "alice").await, 3);
        assert_eq!(stored_entries(app, "alice").await, 1, "the title only");

        let deleting = app.db.connection().begin().await.unwrap();
        deleting
            .execute_unprepared(
                "SELECT 1 FROM chatkit_items \
                 WHERE user_id = 'alice' AND thread_id = 't1' AND item_id = 'i2' FOR UPDATE",
            )
            .await
            .unwrap();
        let batch =
            tokio::time::timeout(Duration::from_secs(10), app.db.search_index().index_batch())
                .await
                .expect("the batch waited for a held item")
                .unwrap();
        assert_eq!((batch.queued_items, batch.entries), (3, 2));
        assert_eq!(queued_rows(app, "alice").await, 1, "the held item's row stays");
        assert_eq!(stored_entries(app, "alice").await, 3);
        deleting.rollback().await.unwrap();
        let batch = app.db.search_index().index_batch().await.unwrap();
        assert_eq!((batch.queued_items, batch.entries), (1, 1));
        assert_eq!(queued_rows(app, "alice").await, 0);
        assert_eq!(thread_index_mismatches(app, "alice").await, (0, 0));

        // Saved again without text: the entry goes with the batch.
        let mut silent = user_message("i1", "t1", "");
        silent["content"] = json!([]);
        assert_eq!(put(app, "/threads/t1/items/i1", "alice", &silent).await.status, 200);
        assert_eq!(stored_entries(app, "alice").await, 4, "not yet");
        let batch = app.db.search_index().index_batch().await.unwrap();
        assert_eq!((batch.queued_items, batch.entries), (1, 0));
        assert_eq!(stored_entries(app, "alice").await, 3);

        // Deleted while queued: no entry, and the row is dropped.
        let item = user_message("i4", "t1", "tram four");
        assert_eq!(app.post("/threads/t1/items", "alice", &item.to_string()).await.status, 201);
        assert_eq!(app.delete("/threads/t1/items/i4", "alice").await.status, 204);
        let batch = app.db.search_index().index_batch().await.unwrap();
        assert_eq!((batch.queued_items, batch.entries), (1, 0));
        assert_eq!(queued_rows(app, "alice").await, 0);
        assert_eq!(thread_index_mismatches(app, "alice").await, (0, 0));
        assert!(!app.db.search_index().index_batch().await.unwrap().indexed_any());
        assert_eq!(found(app, "alice", "tram").await.len(), 2);
    })
    .await;
}

/// ChatKit turns, item rewrites and deletes from several clients while the background indexes
/// every few milliseconds: once the queue is empty the index holds exactly the thread items
/// there are, with their current text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_thread_index_matches_the_items_after_concurrent_writes_and_deletes() {
    with_database(Backend::Postgres, async |database| {
        let mut app =
            TestApp::spawn(database, |settings| settings.search.index_interval_ms = 2).await;
        let writers = (0..4).map(|writer| {
            let app = &app;
            async move {
                let thread_id = format!("t{}", writer % 2);
                let created =
                    put(app, &format!("/threads/{thread_id}"), "alice", &thread(&thread_id, None))
                        .await;
                assert_eq!(created.status, 200, "{}", created.text);
                for n in 0..25 {
                    let id = format!("w{writer}n{n}");
                    let item = user_message(&id, &thread_id, &format!("wren writer{writer} n{n}"));
                    let path = format!("/threads/{thread_id}/items");
                    let added = app.post(&path, "alice", &item.to_string()).await;
                    assert_eq!(added.status, 201, "{}", added.text);
                    if n % 3 == 0 {
                        let again = user_message(&id, &thread_id, &format!("heron rewritten {n}"));
                        let saved = put(app, &format!("{path}/{id}"), "alice", &again).await;
                        assert_eq!(saved.status, 200, "{}", saved.text);
                    }
                    if n % 4 == 1 {
                        let deleted = app.delete(&format!("{path}/{id}"), "alice").await;
                        assert_eq!(deleted.status, 204, "{}", deleted.text);
                    }
                }
            }
        });
        futures::future::join_all(writers).await;
        let deadline = Instant::now() + Duration::from_secs(30);
        while queued_rows(&app, "alice").await > 0 {
            assert!(Instant::now() < deadline, "the queue was never emptied");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(thread_index_mismatches(&app, "alice").await, (0, 0));
        assert!(stored_entries(&app, "alice").await > 0);
        app.stop().await.unwrap();
    })
    .await;
}

dual_backend_tests!(
    session_writes_keep_the_index_in_step,
    thread_writes_keep_the_index_in_step,
    another_users_text_is_never_found,
    soft_deleted_chats_are_left_out_unless_asked,
    matching_ignores_case_and_accents_and_the_last_word_is_a_prefix,
    ranking_and_snippets_are_sensible,
    paging_never_skips_or_repeats_a_hit,
    bad_input_is_a_400_and_no_token_a_401,
    search_can_be_switched_off_and_on,
    appended_items_are_indexed_in_the_background,
    an_idle_indexer_sleeps_until_a_write_wakes_it,
    a_background_batch_takes_64_chats_and_the_next_the_rest,
    a_search_indexes_its_users_waiting_items_first,
    concurrent_appends_are_each_indexed_once,
    the_index_matches_the_items_after_concurrent_writes_and_removals,
    a_prune_past_the_mark_leaves_nothing_waiting_below_the_base,
);
