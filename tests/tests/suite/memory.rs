//! Advanced agent memory over HTTP: conditional tail replace and prefix prune, turns,
//! branches and usage, with what the database holds after each step.

use chatstore_tests::{Answer, Backend, TestApp, dual_backend_tests, with_app};
use serde_json::{Value, json};

fn user_msg(text: &str) -> Value {
    json!({ "role": "user", "content": text })
}

fn reply(text: &str) -> Value {
    json!({ "role": "assistant", "content": text })
}

fn numbered(range: std::ops::Range<usize>) -> Vec<Value> {
    range.map(|n| json!({ "type": "message", "content": format!("m{n}") })).collect()
}

fn items_of(answer: &Answer) -> Vec<Value> {
    assert_eq!(answer.status, 200, "{}", answer.text);
    answer.json()["items"].as_array().expect("items").clone()
}

async fn add(app: &TestApp, user: &str, path: &str, items: &[Value]) {
    let answer = app.post(path, user, &json!({ "items": items }).to_string()).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
}

async fn main_items(app: &TestApp, user: &str, session: &str) -> Vec<Value> {
    items_of(&app.get(&format!("/sessions/{session}/items"), user).await)
}

async fn snapshot(app: &TestApp, user: &str, query: &str) -> Value {
    let answer = app.get(&format!("/sessions/s/snapshot?{query}"), user).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    answer.json()
}

/// What the plain routes, the chat row and `GET /chats/{id}` say main holds.
async fn assert_main_is(app: &TestApp, expected: &[Value]) {
    assert_eq!(main_items(app, "alice", "s").await, expected);
    let chat = app.chat_row("alice", "s").await.expect("the chat");
    assert_eq!(chat.item_count, expected.len() as i64);
    let conversation = app.get("/chats/s", "alice").await.json();
    assert_eq!(conversation["conversation"].as_array().unwrap(), expected);
    for limit in [1, 2, expected.len()] {
        let latest = items_of(&app.get(&format!("/sessions/s/items?limit={limit}"), "alice").await);
        assert_eq!(latest, expected[expected.len().saturating_sub(limit)..]);
    }
}

async fn replace_swaps_the_tail_and_prunes_the_head(backend: Backend) {
    with_app(backend, async |app| {
        add(app, "alice", "/sessions/s/items", &numbered(0..6)).await;
        let snap = snapshot(app, "alice", "limit=3").await;
        assert_eq!(snap["items"], json!(numbered(3..6)));
        assert_eq!(snap["first_position"], 4);
        assert_eq!(snap["item_count"], 6);
        let revision = snap["revision"].as_i64().unwrap();

        // Replace positions 5.. (m4, m5) by one summary and drop the first two items.
        let body = json!({ "revision": revision, "after_position": 4, "prune_leading": 2,
                           "items": [{ "type": "compaction", "encrypted_content": "x" }] });
        let answer = app.post("/sessions/s/replace", "alice", &body.to_string()).await;
        assert_eq!(answer.status, 200, "{}", answer.text);
        assert_eq!(answer.json()["item_count"], 3);
        assert_eq!(answer.json()["revision"], revision + 1);
        let mut expected = numbered(2..4);
        expected.push(json!({ "type": "compaction", "encrypted_content": "x" }));
        assert_main_is(app, &expected).await;

        // Appends, pops and the latest-N read carry on from there.
        add(app, "alice", "/sessions/s/items", &numbered(9..11)).await;
        expected.extend(numbered(9..11));
        assert_main_is(app, &expected).await;
        let popped = app.post("/sessions/s/pop", "alice", "").await.json();
        assert_eq!(popped["item"], numbered(10..11)[0]);
        expected.pop();
        assert_main_is(app, &expected).await;
        // A snapshot after the base moved reads the right positions.
        let snap = snapshot(app, "alice", "limit=2").await;
        assert_eq!(snap["items"].as_array().unwrap(), &expected[2..]);
        assert_eq!(snap["first_position"], 5);
        let after = snapshot(app, "alice", "limit=2&after=0").await;
        assert_eq!(after["items"].as_array().unwrap(), &expected[..2]);
        assert_eq!(after["first_position"], 3);
    })
    .await;
}

async fn a_changed_session_is_a_conflict_and_nothing_changes(backend: Backend) {
    with_app(backend, async |app| {
        add(app, "alice", "/sessions/s/items", &numbered(0..4)).await;
        let revision = snapshot(app, "alice", "limit=2").await["revision"].as_i64().unwrap();
        add(app, "alice", "/sessions/s/items", &numbered(4..5)).await;
        let body = json!({ "revision": revision, "after_position": 2, "items": [] });
        let answer = app.post("/sessions/s/replace", "alice", &body.to_string()).await;
        answer.assert_error(409, "conflict");
        assert_main_is(app, &numbered(0..5)).await;

        // A pop and a clear change the revision too.
        for change in ["pop", "clear"] {
            let revision = snapshot(app, "alice", "limit=2").await["revision"].as_i64().unwrap();
            let before = main_items(app, "alice", "s").await;
            let after = if change == "pop" {
                app.post("/sessions/s/pop", "alice", "").await;
                before[..before.len() - 1].to_vec()
            } else {
                app.delete("/sessions/s/items", "alice").await;
                Vec::new()
            };
            let body = json!({ "revision": revision, "after_position": 0, "items": [{"a": 1}] });
            let answer = app.post("/sessions/s/replace", "alice", &body.to_string()).await;
            answer.assert_error(409, "conflict");
            assert_main_is(app, &after).await;
        }
    })
    .await;
}

async fn replace_rejects_bad_input_and_other_users(backend: Backend) {
    with_app(backend, async |app| {
        add(app, "alice", "/sessions/s/items", &numbered(0..4)).await;
        let revision = snapshot(app, "alice", "limit=2").await["revision"].as_i64().unwrap();
        for body in [
            json!({ "revision": revision, "after_position": 5, "items": [] }),
            json!({ "revision": revision, "after_position": 1, "prune_leading": 2, "items": [] }),
            json!({ "revision": revision, "after_position": 2, "prune_leading": -1, "items": [] }),
            json!({ "revision": revision, "after_position": 2, "items": [1] }),
            json!({ "revision": revision, "after_position": 2 }),
            json!({ "revision": revision, "after_position": 2, "items": [], "extra": 1 }),
            json!({ "revision": revision, "after_position": 2, "items": [], "branch": " " }),
        ] {
            let answer = app.post("/sessions/s/replace", "alice", &body.to_string()).await;
            answer.assert_error(400, "invalid_request");
        }
        for query in ["limit=0", "limit=10001", "limit=x", "limit=2&branch="] {
            app.get(&format!("/sessions/s/snapshot?{query}"), "alice")
                .await
                .assert_error(400, "invalid_request");
        }
        // Bob cannot see or change Alice's session.
        let bob = snapshot(app, "bob", "limit=5").await;
        assert_eq!(bob["items"], json!([]));
        assert_eq!(bob["revision"], 0);
        let body = json!({ "revision": revision, "after_position": 2, "items": [] });
        app.post("/sessions/s/replace", "bob", &body.to_string())
            .await
            .assert_error(404, "not_found");
        assert_main_is(app, &numbered(0..4)).await;
        assert_eq!(
            app.chat_row("alice", "s").await.unwrap().item_count,
            4,
            "nothing changed after the refused requests"
        );
    })
    .await;
}

fn conversation() -> Vec<Value> {
    vec![
        user_msg("hello"),
        reply("hi"),
        user_msg("what is the weather"),
        json!({ "type": "function_call", "call_id": "c1", "name": "weather", "arguments": "{}" }),
        json!({ "type": "function_call_output", "call_id": "c1", "output": "sunny" }),
        reply("sunny"),
        user_msg("thanks, Bye"),
        reply("bye"),
    ]
}

async fn turns_are_listed_found_and_read_whole(backend: Backend) {
    with_app(backend, async |app| {
        add(app, "alice", "/sessions/s/items", &conversation()).await;
        let turns = app.get("/sessions/s/turns", "alice").await.json();
        let turns = turns["turns"].as_array().unwrap();
        let numbers: Vec<_> = turns.iter().map(|turn| turn["turn"].as_i64().unwrap()).collect();
        assert_eq!(numbers, [1, 2, 3]);
        assert_eq!(turns[1]["content"], "what is the weather");
        assert_eq!(turns[1]["preview"], "what is the weather");
        assert_eq!(turns[1]["position"], 3);
        assert!(turns[1]["created_at"].is_string());

        let found = app.get("/sessions/s/turns?q=BYE", "alice").await.json();
        assert_eq!(found["turns"].as_array().unwrap().len(), 1);
        assert_eq!(found["turns"][0]["turn"], 3);
        app.get("/sessions/s/turns?q=", "alice").await.assert_error(400, "invalid_request");

        // The latest two whole turns start at the weather question, so the call and its
        // output stay together.
        let latest = app.get("/sessions/s/turns/latest?turns=2", "alice").await;
        assert_eq!(items_of(&latest), conversation()[2..]);
        assert_eq!(latest.json()["first_position"], 3);
        let all = app.get("/sessions/s/turns/latest?turns=9", "alice").await;
        assert_eq!(items_of(&all), conversation());
        app.get("/sessions/s/turns/latest?turns=0", "alice")
            .await
            .assert_error(400, "invalid_request");
        // Texts PostgreSQL's JSON functions refuse (a lone surrogate, `\u0000`) are turns too.
        let odd = r#"{"items":[{"role":"user","content":"lone \ud83c"},{"role":"\u0000"}]}"#;
        assert_eq!(app.post("/sessions/s/items", "alice", odd).await.status, 200);
        let turns = app.get("/sessions/s/turns", "alice").await;
        assert_eq!(turns.status, 200, "{}", turns.text);
        // (Counted in the text: serde_json, like the harness, refuses the lone surrogate.)
        assert_eq!(turns.text.matches("\"turn\":").count(), 4, "{}", turns.text);
        assert!(turns.text.contains(r#""turn":4,"position":9,"content":"lone \ud83c""#));
        let latest = app.get("/sessions/s/turns/latest?turns=1", "alice").await;
        assert_eq!(latest.status, 200);
        assert!(latest.text.starts_with(r#"{"items":[{"role":"user","content":"lone \ud83c"}"#));
        let made = create_branch(app, "alice", json!({ "branch_id": "odd", "turn": 4 })).await;
        assert_eq!(made.status, 201, "{}", made.text);
        // Another user sees no turns.
        assert_eq!(app.get("/sessions/s/turns", "bob").await.json(), json!({ "turns": [] }));
        assert!(items_of(&app.get("/sessions/s/turns/latest?turns=2", "bob").await).is_empty());
    })
    .await;
}

async fn create_branch(app: &TestApp, user: &str, body: Value) -> Answer {
    app.post("/sessions/s/branches", user, &body.to_string()).await
}

async fn branches_fork_without_touching_main(backend: Backend) {
    with_app(backend, async |app| {
        add(app, "alice", "/sessions/s/items", &conversation()).await;
        let made = create_branch(app, "alice", json!({ "branch_id": "alt", "turn": 2 })).await;
        assert_eq!(made.status, 201, "{}", made.text);
        assert_eq!(made.json()["message_count"], 2);
        assert_eq!(made.json()["user_turns"], 1);
        // Nothing was copied: the branch has no rows of its own yet.
        let own = branch_rows(app).await;
        assert_eq!(own, 0);

        let alt = "/sessions/s/branches/alt/items";
        assert_eq!(items_of(&app.get(alt, "alice").await), conversation()[..2]);
        add(app, "alice", alt, &[user_msg("other question"), reply("other answer")]).await;
        let mut branch = conversation()[..2].to_vec();
        branch.extend([user_msg("other question"), reply("other answer")]);
        assert_eq!(items_of(&app.get(alt, "alice").await), branch);
        assert_eq!(items_of(&app.get(&format!("{alt}?limit=3"), "alice").await), branch[1..]);
        assert_main_is(app, &conversation()).await;

        // Main's writes never change the branch, even below its fork point.
        app.delete("/sessions/s/items", "alice").await;
        assert_main_is(app, &[]).await;
        assert_eq!(items_of(&app.get(alt, "alice").await), branch);

        // The branch's own writes: pop, and a replace through its own revision.
        let popped = app.post("/sessions/s/branches/alt/pop", "alice", "").await.json();
        assert_eq!(popped["item"], reply("other answer"));
        branch.pop();
        let snap = snapshot(app, "alice", "limit=1&branch=alt").await;
        let body = json!({ "revision": snap["revision"], "after_position": 1, "prune_leading": 1,
                           "items": [reply("merged")], "branch": "alt" });
        let answer = app.post("/sessions/s/replace", "alice", &body.to_string()).await;
        assert_eq!(answer.status, 200, "{}", answer.text);
        assert_eq!(items_of(&app.get(alt, "alice").await), [reply("merged")]);
        assert_main_is(app, &[]).await;

        let listed = app.get("/sessions/s/branches", "alice").await.json();
        let names: Vec<_> = listed["branches"]
            .as_array()
            .unwrap()
            .iter()
            .map(|branch| branch["branch_id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(names, ["main", "alt"]);
    })
    .await;
}

async fn branch_rows(app: &TestApp) -> i64 {
    use sea_orm::{ConnectionTrait, Statement};
    let connection = app.db.connection();
    let row = connection
        .query_one_raw(Statement::from_string(
            connection.get_database_backend(),
            "SELECT COUNT(*) AS n FROM session_branch_items",
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get::<i64>("", "n").unwrap()
}

async fn branch_names_stay_reserved_and_bad_input_is_refused(backend: Backend) {
    with_app(backend, async |app| {
        add(app, "alice", "/sessions/s/items", &conversation()).await;
        assert_eq!(
            create_branch(app, "alice", json!({ "branch_id": "b", "turn": 3 })).await.status,
            201
        );
        // Reused, `main`, after a delete: all taken.
        create_branch(app, "alice", json!({ "branch_id": "b", "turn": 1 }))
            .await
            .assert_error(409, "conflict");
        create_branch(app, "alice", json!({ "branch_id": "main", "turn": 1 }))
            .await
            .assert_error(409, "conflict");
        assert_eq!(app.delete("/sessions/s/branches/b", "alice").await.status, 204);
        assert_eq!(branch_rows(app).await, 0);
        create_branch(app, "alice", json!({ "branch_id": "b", "turn": 1 }))
            .await
            .assert_error(409, "conflict");
        app.get("/sessions/s/branches/b/items", "alice").await.assert_error(404, "not_found");
        app.delete("/sessions/s/branches/b", "alice").await.assert_error(404, "not_found");
        app.delete("/sessions/s/branches/main", "alice").await.assert_error(400, "invalid_request");

        for body in [
            json!({ "branch_id": " ", "turn": 1 }),
            json!({ "branch_id": "", "turn": 1 }),
            json!({ "branch_id": "c", "turn": 0 }),
            json!({ "branch_id": "c" }),
        ] {
            create_branch(app, "alice", body).await.assert_error(400, "invalid_request");
        }
        create_branch(app, "alice", json!({ "branch_id": "c", "turn": 9 }))
            .await
            .assert_error(404, "not_found");
        create_branch(app, "alice", json!({ "branch_id": "c", "turn": 1, "from_branch": "nope" }))
            .await
            .assert_error(404, "not_found");

        // Bob: Alice's session and branches do not exist for him, and nothing changes.
        create_branch(app, "bob", json!({ "branch_id": "c", "turn": 1 }))
            .await
            .assert_error(404, "not_found");
        assert_eq!(
            create_branch(app, "alice", json!({ "branch_id": "c", "turn": 2 })).await.status,
            201
        );
        for (method, path) in [
            (reqwest::Method::GET, "/sessions/s/branches/c/items"),
            (reqwest::Method::DELETE, "/sessions/s/branches/c/items"),
            (reqwest::Method::POST, "/sessions/s/branches/c/pop"),
            (reqwest::Method::DELETE, "/sessions/s/branches/c"),
        ] {
            app.send(method, path, "bob", None).await.assert_error(404, "not_found");
        }
        let body = json!({ "items": [user_msg("x")] }).to_string();
        app.post("/sessions/s/branches/c/items", "bob", &body).await.assert_error(404, "not_found");
        assert_eq!(app.get("/sessions/s/branches", "bob").await.json(), json!({ "branches": [] }));
        assert_eq!(
            items_of(&app.get("/sessions/s/branches/c/items", "alice").await),
            conversation()[..2]
        );
        assert_main_is(app, &conversation()).await;
    })
    .await;
}

async fn usage_is_stored_per_turn_and_added_up(backend: Backend) {
    with_app(backend, async |app| {
        let put = |user: &'static str, body: Value| async move {
            app.send(reqwest::Method::PUT, "/sessions/s/usage", user, Some(&body.to_string())).await
        };
        let usage = json!({ "requests": 1, "input_tokens": 10, "output_tokens": 5,
                            "total_tokens": 15, "input_tokens_details": { "cached_tokens": 2 } });
        // No turn yet: nothing is stored.
        assert_eq!(put("alice", usage.clone()).await.json(), json!({ "turn": null }));
        add(app, "alice", "/sessions/s/items", &conversation()[..2]).await;
        assert_eq!(put("alice", usage.clone()).await.json(), json!({ "turn": 1 }));
        add(app, "alice", "/sessions/s/items", &conversation()[2..6]).await;
        assert_eq!(put("alice", usage.clone()).await.json(), json!({ "turn": 2 }));
        // A second run in the same turn replaces that turn's usage.
        let again =
            json!({ "requests": 2, "input_tokens": 20, "output_tokens": 6, "total_tokens": 26 });
        assert_eq!(put("alice", again).await.json(), json!({ "turn": 2 }));
        assert_eq!(
            create_branch(app, "alice", json!({ "branch_id": "b", "turn": 2 })).await.status,
            201
        );
        add(app, "alice", "/sessions/s/branches/b/items", &[user_msg("q")]).await;
        let mut on_branch = usage.clone();
        on_branch["branch"] = json!("b");
        assert_eq!(put("alice", on_branch).await.json(), json!({ "turn": 2 }));

        let total = app.get("/sessions/s/usage", "alice").await.json();
        assert_eq!(
            total["usage"],
            json!({ "requests": 4, "input_tokens": 40, "output_tokens": 16, "total_tokens": 56,
                    "total_turns": 3 })
        );
        let main = app.get("/sessions/s/usage?branch=main", "alice").await.json();
        assert_eq!(main["usage"]["total_tokens"], 41);
        let turns = app.get("/sessions/s/usage/turns", "alice").await.json();
        assert_eq!(turns["turns"][0]["user_turn_number"], 1);
        assert_eq!(turns["turns"][0]["input_tokens_details"], json!({ "cached_tokens": 2 }));
        assert_eq!(turns["turns"][1]["requests"], 2);
        assert_eq!(turns["turns"][1]["input_tokens_details"], Value::Null);
        let one = app.get("/sessions/s/usage/turns?turn=1&branch=b", "alice").await.json();
        assert_eq!(one["turns"], json!([]));

        // Bad input and another user.
        for body in [
            json!({ "requests": -1, "input_tokens": 0, "output_tokens": 0, "total_tokens": 0 }),
            json!({ "requests": 1 }),
            json!({ "requests": 1, "input_tokens": 0, "output_tokens": 0, "total_tokens": 0,
                    "input_tokens_details": [1] }),
        ] {
            put("alice", body).await.assert_error(400, "invalid_request");
        }
        assert_eq!(put("bob", usage.clone()).await.json(), json!({ "turn": null }));
        let mut on_branch = usage.clone();
        on_branch["branch"] = json!("b");
        put("bob", on_branch).await.assert_error(404, "not_found");
        assert_eq!(app.get("/sessions/s/usage", "bob").await.json(), json!({ "usage": null }));
        // Deleting a branch drops its usage; clearing the memory drops all of it.
        app.delete("/sessions/s/branches/b", "alice").await;
        let total = app.get("/sessions/s/usage", "alice").await.json();
        assert_eq!(total["usage"]["total_turns"], 2);
        assert_eq!(app.delete("/sessions/s/memory", "alice").await.status, 204);
        assert_eq!(app.get("/sessions/s/usage", "alice").await.json(), json!({ "usage": null }));
        assert_main_is(app, &[]).await;
    })
    .await;
}

async fn fork_of_a_branch_and_main_prune_keep_every_line_whole(backend: Backend) {
    with_app(backend, async |app| {
        add(app, "alice", "/sessions/s/items", &conversation()).await;
        assert_eq!(
            create_branch(app, "alice", json!({ "branch_id": "a", "turn": 3 })).await.status,
            201
        );
        let own = [user_msg("a2"), reply("r2"), user_msg("a3"), reply("r3")];
        add(app, "alice", "/sessions/s/branches/a/items", &own).await;
        // A branch of `a` past `a`'s fork point takes the own items of `a` it needs.
        let made = create_branch(
            app,
            "alice",
            json!({ "branch_id": "aa", "turn": 4, "from_branch": "a" }),
        )
        .await;
        assert_eq!(made.status, 201, "{}", made.text);
        assert_eq!(made.json()["message_count"], 8);
        let mut aa = conversation()[..6].to_vec();
        aa.extend(own[..2].iter().cloned());
        assert_eq!(items_of(&app.get("/sessions/s/branches/aa/items", "alice").await), aa);
        // Main prunes its first five items: the branches keep theirs.
        let snap = snapshot(app, "alice", "limit=3").await;
        let body = json!({ "revision": snap["revision"], "after_position": 8, "prune_leading": 5,
                           "items": [] });
        assert_eq!(app.post("/sessions/s/replace", "alice", &body.to_string()).await.status, 200);
        assert_main_is(app, &conversation()[5..]).await;
        let mut a = conversation()[..6].to_vec();
        a.extend(own.iter().cloned());
        assert_eq!(items_of(&app.get("/sessions/s/branches/a/items", "alice").await), a);
        assert_eq!(items_of(&app.get("/sessions/s/branches/aa/items", "alice").await), aa);
        let latest = app.get("/sessions/s/branches/a/items?limit=3", "alice").await;
        assert_eq!(items_of(&latest), a[a.len() - 3..]);
        let turns = app.get("/sessions/s/turns?branch=a", "alice").await.json();
        assert_eq!(turns["turns"].as_array().unwrap().len(), 4);
    })
    .await;
}

/// Forks find turns through main's remembered turn starts; every write that moves main's
/// turns (pop, append after it, prune) must leave them right.
async fn forks_find_turns_after_main_changes(backend: Backend) {
    with_app(backend, async |app| {
        add(app, "alice", "/sessions/s/items", &conversation()).await;
        let fork = async |name: &str, turn: i64| {
            let made =
                create_branch(app, "alice", json!({ "branch_id": name, "turn": turn })).await;
            assert_eq!(made.status, 201, "{}", made.text);
            items_of(&app.get(&format!("/sessions/s/branches/{name}/items"), "alice").await)
        };
        assert_eq!(fork("b1", 3).await, conversation()[..6]);
        // Turn 3 goes, and a new turn 3 comes, one item later.
        app.post("/sessions/s/pop", "alice", "").await;
        app.post("/sessions/s/pop", "alice", "").await;
        add(app, "alice", "/sessions/s/items", &[reply("extra"), user_msg("new third")]).await;
        let mut expected = conversation()[..6].to_vec();
        expected.push(reply("extra"));
        assert_eq!(fork("b2", 3).await, expected);
        // The branch made before still holds what it held.
        assert_eq!(
            items_of(&app.get("/sessions/s/branches/b1/items", "alice").await),
            conversation()[..6]
        );
        // Pruning the first turn renumbers the rest: turn 1 is now the weather question.
        let snap = snapshot(app, "alice", "limit=1").await;
        let body = json!({ "revision": snap["revision"], "after_position": 8,
                           "prune_leading": 2, "items": [] });
        assert_eq!(app.post("/sessions/s/replace", "alice", &body.to_string()).await.status, 200);
        assert!(fork("b3", 1).await.is_empty());
        assert_eq!(fork("b4", 2).await, expected[2..]);
        let turns = app.get("/sessions/s/turns", "alice").await.json();
        assert_eq!(turns["turns"].as_array().unwrap().len(), 2);
        create_branch(app, "alice", json!({ "branch_id": "b5", "turn": 3 }))
            .await
            .assert_error(404, "not_found");
    })
    .await;
}

/// The Rust sessions (in-process and over HTTP) compact atomically too.
async fn rust_sessions_compact_atomically(backend: Backend) {
    use agent_session::{CompactableSession, HttpSession, Item, StoreSession};
    with_app(backend, async |app| {
        let item = |value: Value| Item::from_value(&value).unwrap();
        let local = StoreSession::new(app.db.clone(), "alice", "s");
        let remote =
            HttpSession::new(reqwest::Client::new(), &app.address, app.token("alice"), "s")
                .unwrap();
        let sessions: [&dyn CompactableSession; 2] = [&local, &remote];
        for (round, session) in sessions.into_iter().enumerate() {
            session.clear_session().await.unwrap();
            let history: Vec<Item> = numbered(0..5).into_iter().map(item).collect();
            session.add_items(&history).await.unwrap();
            let snapshot = session.compaction_snapshot(3).await.unwrap();
            assert_eq!(snapshot.items, history[2..]);
            assert!(!snapshot.complete);
            // A write after the snapshot: the replace is refused and changes nothing.
            let late = item(json!({ "late": round }));
            session.add_items(std::slice::from_ref(&late)).await.unwrap();
            let summary = item(json!({ "type": "compaction", "encrypted_content": "s" }));
            let replaced = session.replace_suffix(&snapshot, 1, std::slice::from_ref(&summary), 0);
            assert!(!replaced.await.unwrap());
            let mut expected = history.clone();
            expected.push(late);
            assert_eq!(session.get_items(None).await.unwrap(), expected);
            // From a fresh snapshot it happens, with the first item pruned.
            let snapshot = session.compaction_snapshot(2).await.unwrap();
            let replaced = session.replace_suffix(&snapshot, 0, std::slice::from_ref(&summary), 1);
            assert!(replaced.await.unwrap());
            let mut expected = history[1..4].to_vec();
            expected.push(summary);
            assert_eq!(session.get_items(None).await.unwrap(), expected);
            assert_eq!(session.get_items(Some(1)).await.unwrap(), expected[3..]);
            assert_eq!(app.chat_row("alice", "s").await.unwrap().item_count, 4);
            assert!(session.compaction_snapshot(10).await.unwrap().complete);
        }
    })
    .await;
}

dual_backend_tests!(
    replace_swaps_the_tail_and_prunes_the_head,
    a_changed_session_is_a_conflict_and_nothing_changes,
    replace_rejects_bad_input_and_other_users,
    turns_are_listed_found_and_read_whole,
    branches_fork_without_touching_main,
    branch_names_stay_reserved_and_bad_input_is_refused,
    usage_is_stored_per_turn_and_added_up,
    fork_of_a_branch_and_main_prune_keep_every_line_whole,
    forks_find_turns_after_main_changes,
    rust_sessions_compact_atomically,
);
