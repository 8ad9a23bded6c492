//! One conformance suite for every `Session` implementation: in-process over the
//! repositories, and over HTTP, each on both databases.

use agent_session::{HttpSession, Item, Session, SessionError, SessionSettings, StoreSession};
use chatstore_tests::{Backend, TestApp, dual_backend_tests, with_app};
use serde_json::json;

type MakeSession<'a> = dyn Fn(&str, &str, SessionSettings) -> Box<dyn Session> + 'a;

fn item(n: usize) -> Item {
    Item::from_value(&json!({ "role": "user", "content": format!("m{n}") })).unwrap()
}

fn items(range: std::ops::Range<usize>) -> Vec<Item> {
    range.map(item).collect()
}

async fn conformance(make: &MakeSession<'_>) {
    let none = SessionSettings::default();

    // An unknown session is empty.
    let session = make("alice", "conf", none);
    assert_eq!(session.session_id(), "conf");
    assert!(session.get_items(None).await.unwrap().is_empty());
    assert!(session.get_items(Some(5)).await.unwrap().is_empty());
    assert_eq!(session.pop_item().await.unwrap(), None);

    // Batches append in order; limits return the tail, oldest first.
    session.add_items(&items(0..3)).await.unwrap();
    session.add_items(&items(3..5)).await.unwrap();
    session.add_items(&[]).await.unwrap();
    assert_eq!(session.get_items(None).await.unwrap(), items(0..5));
    assert_eq!(session.get_items(Some(2)).await.unwrap(), items(3..5));
    assert_eq!(session.get_items(Some(5)).await.unwrap(), items(0..5));
    assert_eq!(session.get_items(Some(100)).await.unwrap(), items(0..5));
    assert!(session.get_items(Some(0)).await.unwrap().is_empty());

    // The settings' limit applies when no limit is given; an explicit one (even 0) wins.
    let limited = make("alice", "conf", SessionSettings { limit: Some(3) });
    assert_eq!(limited.settings().limit, Some(3));
    assert_eq!(limited.get_items(None).await.unwrap(), items(2..5));
    assert_eq!(limited.get_items(Some(1)).await.unwrap(), items(4..5));
    assert!(limited.get_items(Some(0)).await.unwrap().is_empty());

    // Pop takes the newest, one at a time.
    assert_eq!(session.pop_item().await.unwrap(), Some(item(4)));
    assert_eq!(session.pop_item().await.unwrap(), Some(item(3)));
    assert_eq!(session.get_items(None).await.unwrap(), items(0..3));

    // Clear empties it; the session is usable afterwards.
    session.clear_session().await.unwrap();
    assert!(session.get_items(None).await.unwrap().is_empty());
    assert_eq!(session.pop_item().await.unwrap(), None);
    session.add_items(&items(7..8)).await.unwrap();
    assert_eq!(session.get_items(None).await.unwrap(), items(7..8));
    make("alice", "never-written", none).clear_session().await.unwrap();

    // Items keep their exact JSON text.
    let exact = Item::from_json(
        r#"{"content":"nul \u0000 日本 🎉","n":123456789012345678901234567890,"f":1.0e5,"args":"{\"a\":1}"}"#,
    )
    .unwrap();
    let odd = make("alice", "a/b %25 😀", none);
    odd.add_items(std::slice::from_ref(&exact)).await.unwrap();
    let back = odd.get_items(None).await.unwrap();
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].as_json(), exact.as_json());
    assert_eq!(odd.pop_item().await.unwrap().unwrap().as_json(), exact.as_json());

    // Users never see each other's sessions, even with the same id.
    let bob = make("bob", "conf", none);
    assert!(bob.get_items(None).await.unwrap().is_empty());
    bob.add_items(&items(9..10)).await.unwrap();
    assert_eq!(bob.pop_item().await.unwrap(), Some(item(9)));
    assert_eq!(session.get_items(None).await.unwrap(), items(7..8));
}

fn http_session(
    app: &TestApp,
    user: &str,
    session: &str,
    settings: SessionSettings,
) -> Box<dyn Session> {
    let session = HttpSession::new(reqwest::Client::new(), &app.address, app.token(user), session)
        .unwrap()
        .with_settings(settings);
    Box::new(session)
}

async fn the_store_session_conforms(backend: Backend) {
    with_app(backend, async |app| {
        let db = app.db.clone();
        conformance(&move |user, session, settings| {
            Box::new(StoreSession::new(db.clone(), user, session).with_settings(settings))
        })
        .await;
    })
    .await;
}

async fn the_http_session_conforms(backend: Backend) {
    with_app(backend, async |app| {
        conformance(&|user, session, settings| http_session(app, user, session, settings)).await;
    })
    .await;
}

/// Both implementations read and write the same sessions.
async fn the_two_implementations_share_their_data(backend: Backend) {
    with_app(backend, async |app| {
        let local = StoreSession::new(app.db.clone(), "alice", "shared");
        let remote = http_session(app, "alice", "shared", SessionSettings::default());
        local.add_items(&items(0..2)).await.unwrap();
        remote.add_items(&items(2..3)).await.unwrap();
        assert_eq!(remote.get_items(None).await.unwrap(), items(0..3));
        assert_eq!(local.pop_item().await.unwrap(), Some(item(2)));
        assert_eq!(remote.get_items(None).await.unwrap(), items(0..2));
    })
    .await;
}

/// Server refusals surface as errors with the server's code; they are not retried.
async fn http_errors_carry_the_servers_code(backend: Backend) {
    with_app(backend, async |app| {
        let session =
            HttpSession::new(reqwest::Client::new(), &app.address, "not-a-token", "s").unwrap();
        match session.add_items(&items(0..1)).await {
            Err(SessionError::Server { status: 401, code, .. }) => assert_eq!(code, "unauthorized"),
            other => panic!("expected a 401, got {other:?}"),
        }
        assert_eq!(app.db.sessions().item_count("alice", "s").await.unwrap(), 0);
        // Nothing listens on port 9: a transport error, after bounded retries.
        let gone =
            HttpSession::new(reqwest::Client::new(), "http://127.0.0.1:9", "t", "s").unwrap();
        assert!(matches!(gone.add_items(&items(0..1)).await, Err(SessionError::Transport(_))));
        assert!(Item::from_json("[1]").is_err());
        assert!(Item::from_json("not json").is_err());
    })
    .await;
}

dual_backend_tests!(
    the_store_session_conforms,
    the_http_session_conforms,
    the_two_implementations_share_their_data,
    http_errors_carry_the_servers_code,
);
