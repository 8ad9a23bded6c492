//! The web console's server side: its page and files (no token, strict headers), the
//! development sign-in route, and the backwards page read of sessions it scrolls with.
//! The console itself is driven in a real browser by `console_browser`.

use chatstore_tests::{
    Answer, Backend, TestApp, dual_backend_tests, with_app, with_app_configured,
};
use secrecy::SecretString;
use serde_json::{Value, json};

/// A request without any token.
async fn anonymous(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    body: Option<&str>,
) -> Answer {
    let mut request = app.client.request(method, app.url(path));
    if let Some(body) = body {
        request = request.header("content-type", "application/json").body(body.to_owned());
    }
    Answer::read(request.send().await.unwrap()).await
}

fn header<'a>(answer: &'a Answer, name: &str) -> &'a str {
    answer.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

#[track_caller]
fn assert_console_headers(answer: &Answer) {
    let policy = header(answer, "content-security-policy");
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "img-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(policy.contains(directive), "{directive} missing from {policy:?}");
    }
    assert!(!policy.contains("unsafe"), "the policy allows something unsafe: {policy}");
    assert_eq!(header(answer, "x-content-type-options"), "nosniff");
    assert_eq!(header(answer, "referrer-policy"), "no-referrer");
    assert_eq!(header(answer, "x-frame-options"), "DENY");
}

async fn page_and_assets_need_no_token_and_carry_strict_headers(backend: Backend) {
    with_app(backend, async |app| {
        let page = anonymous(app, reqwest::Method::GET, "/console", None).await;
        assert_eq!(page.status, 200, "{}", page.text);
        assert!(header(&page, "content-type").starts_with("text/html"));
        assert_console_headers(&page);
        // The page loads its script from a file, never inline.
        assert!(page.text.contains(r#"<script type="module" src="/console/app.js"></script>"#));
        assert_eq!(page.text.matches("<script").count(), 1, "one script tag, and no inline one");
        for handler in ["onclick", "onload", "onerror", "onsubmit", "javascript:"] {
            assert!(!page.text.contains(handler), "an inline handler in the page: {handler}");
        }

        for (asset, media_type) in [
            ("app.js", "text/javascript"),
            ("api.js", "text/javascript"),
            ("dom.js", "text/javascript"),
            ("reader.js", "text/javascript"),
            ("lists.js", "text/javascript"),
            ("composer.js", "text/javascript"),
            ("style.css", "text/css"),
        ] {
            let answer =
                anonymous(app, reqwest::Method::GET, &format!("/console/{asset}"), None).await;
            assert_eq!(answer.status, 200, "{asset}: {}", answer.text);
            assert!(header(&answer, "content-type").starts_with(media_type), "{asset}");
            assert_console_headers(&answer);
            assert!(!answer.text.is_empty());
        }
        // Nothing renders through HTML parsing: the scripts never touch innerHTML and friends.
        for asset in ["app.js", "api.js", "dom.js", "reader.js", "lists.js", "composer.js"] {
            let script =
                anonymous(app, reqwest::Method::GET, &format!("/console/{asset}"), None).await;
            for sink in ["innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("]
            {
                assert!(!script.text.contains(sink), "{asset} uses {sink}");
            }
        }

        // An unknown file is the API's 404, and other methods are not allowed.
        let missing = anonymous(app, reqwest::Method::GET, "/console/secrets.env", None).await;
        missing.assert_error(404, "not_found");
        let traversal =
            anonymous(app, reqwest::Method::GET, "/console/..%2FCargo.toml", None).await;
        traversal.assert_error(404, "not_found");
        let post = anonymous(app, reqwest::Method::POST, "/console", Some("{}")).await;
        assert_eq!(post.status, 405, "{}", post.text);

        // The OpenAPI document lists the page, every file and the development sign-in.
        let document = anonymous(app, reqwest::Method::GET, "/openapi.json", None).await.json();
        for path in ["/console", "/console/app.js", "/console/style.css", "/console/reader.js"] {
            assert!(document["paths"][path]["get"].is_object(), "{path} is not documented");
        }
        assert!(document["paths"]["/console/dev-token"]["post"].is_object());
        assert!(
            document["paths"]["/sessions/{session_id}/items"]["get"]["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .any(|parameter| parameter["name"] == "before")
        );
    })
    .await;
}

async fn dev_token_signs_in_by_name_in_development(backend: Backend) {
    with_app(backend, async |app| {
        let answer =
            anonymous(app, reqwest::Method::POST, "/console/dev-token", Some(r#"{"user":"ada"}"#))
                .await;
        assert_eq!(answer.status, 200, "{}", answer.text);
        let token = answer.json()["token"].as_str().unwrap().to_owned();
        // The token is ada's: what she stores under it is hers, and only hers.
        let created = app
            .client
            .post(app.url("/chats"))
            .bearer_auth(&token)
            .json(&json!({"chat_id": "c1", "title": "by token"}))
            .send()
            .await
            .unwrap();
        assert_eq!(created.status(), 201);
        assert_eq!(app.chat_row("ada", "c1").await.unwrap().title.as_deref(), Some("by token"));
        assert!(app.chat_row("bob", "c1").await.is_none());
        app.get("/chats/c1", "bob").await.assert_error(404, "not_found");

        // Bad input is a 400 (or 415) and makes nothing.
        for body in
            [r#"{}"#, r#"{"user":""}"#, r#"{"user":5}"#, r#"{"user":"a","x":1}"#, "[", "null"]
        {
            let refused =
                anonymous(app, reqwest::Method::POST, "/console/dev-token", Some(body)).await;
            refused.assert_error(400, "invalid_request");
        }
        // The limit counts characters, as the schema's maxLength does.
        let widest = json!({"user": "é".repeat(255)}).to_string();
        let accepted =
            anonymous(app, reqwest::Method::POST, "/console/dev-token", Some(&widest)).await;
        assert_eq!(accepted.status, 200, "{}", accepted.text);
        let long = json!({"user": "x".repeat(256)}).to_string();
        anonymous(app, reqwest::Method::POST, "/console/dev-token", Some(&long))
            .await
            .assert_error(400, "invalid_request");
        let text = app
            .client
            .post(app.url("/console/dev-token"))
            .header("content-type", "text/plain")
            .body(r#"{"user":"ada"}"#)
            .send()
            .await
            .unwrap();
        Answer::read(text).await.assert_error(415, "unsupported_media_type");
        assert_eq!(app.all_chat_rows().await.len(), 1);
    })
    .await;
}

async fn dev_token_is_404_with_any_other_secret(backend: Backend) {
    let secret = "a-real-secret-of-a-real-deployment-0123456789";
    with_app_configured(
        backend,
        |settings| settings.auth.jwt_secret = Some(SecretString::from(secret)),
        async |app| {
            for body in [r#"{"user":"ada"}"#, "{}", "["] {
                let answer =
                    anonymous(app, reqwest::Method::POST, "/console/dev-token", Some(body)).await;
                answer.assert_error(404, "not_found");
            }
            // The console itself is still served.
            assert_eq!(anonymous(app, reqwest::Method::GET, "/console", None).await.status, 200);
        },
    )
    .await;
}

/// Adds items `{"n": 1}` to `{"n": count}` to `user`'s session `session`.
async fn fill(app: &TestApp, user: &str, session: &str, count: i64) {
    let items: Vec<Value> = (1..=count).map(|n| json!({"n": n})).collect();
    let answer = app
        .post(&format!("/sessions/{session}/items"), user, &json!({"items": items}).to_string())
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
}

/// The `n`s of a page's items, and its `first_position`.
async fn page(app: &TestApp, user: &str, query: &str) -> (Vec<i64>, Value) {
    let answer = app.get(&format!("/sessions/s1/items?{query}"), user).await;
    assert_eq!(answer.status, 200, "{query}: {}", answer.text);
    let body = answer.json();
    let numbers =
        body["items"].as_array().unwrap().iter().map(|i| i["n"].as_i64().unwrap()).collect();
    (numbers, body["first_position"].clone())
}

async fn sessions_page_backwards_with_before(backend: Backend) {
    with_app(backend, async |app| {
        fill(app, "ada", "s1", 10).await;
        assert_eq!(page(app, "ada", "limit=3&before=11").await, (vec![8, 9, 10], json!(8)));
        assert_eq!(page(app, "ada", "limit=3&before=8").await, (vec![5, 6, 7], json!(5)));
        assert_eq!(page(app, "ada", "limit=3&before=3").await, (vec![1, 2], json!(1)));
        assert_eq!(page(app, "ada", "limit=3&before=1").await, (vec![], Value::Null));
        assert_eq!(page(app, "ada", "limit=3&before=0").await, (vec![], Value::Null));
        // Past the end: the latest N, in the same shape.
        assert_eq!(
            page(app, "ada", "limit=4&before=9007199254740991").await,
            (vec![7, 8, 9, 10], json!(7))
        );
        assert_eq!(page(app, "ada", "limit=0&before=5").await, (vec![], Value::Null));
        // Without limit, a page of 20.
        assert_eq!(page(app, "ada", "before=6").await, (vec![1, 2, 3, 4, 5], json!(1)));
        // Walking back from the end visits every item once, in order.
        let mut seen = Vec::new();
        let mut before = json!(1_000_000);
        while !before.is_null() {
            let (numbers, first) = page(app, "ada", &format!("limit=4&before={before}")).await;
            seen.splice(0..0, numbers);
            before = if first == json!(1) { Value::Null } else { first };
        }
        assert_eq!(seen, (1..=10).collect::<Vec<_>>());

        // Without `before` the route answers exactly as before: no new key.
        let latest = app.get("/sessions/s1/items?limit=2", "ada").await;
        assert_eq!(latest.json(), json!({"items": [{"n": 9}, {"n": 10}]}));

        // Another user's session of the same id is an unknown one to bob: an empty page.
        assert_eq!(page(app, "bob", "limit=3&before=11").await, (vec![], Value::Null));
        fill(app, "bob", "s1", 2).await;
        assert_eq!(page(app, "bob", "limit=3&before=11").await, (vec![1, 2], json!(1)));
        assert_eq!(page(app, "ada", "limit=3&before=11").await, (vec![8, 9, 10], json!(8)));

        // Bad input: 400, and nothing changes.
        for query in [
            "before=-1",
            "before=x",
            "before=1.5",
            "before=",
            "limit=-1&before=3",
            "limit=x&before=3",
        ] {
            let answer = app.get(&format!("/sessions/s1/items?{query}"), "ada").await;
            answer.assert_error(400, "invalid_request");
        }
        assert_eq!(app.chat_row("ada", "s1").await.unwrap().item_count, 10);
        assert_eq!(app.chat_row("bob", "s1").await.unwrap().item_count, 2);
    })
    .await;
}

dual_backend_tests!(
    page_and_assets_need_no_token_and_carry_strict_headers,
    dev_token_signs_in_by_name_in_development,
    dev_token_is_404_with_any_other_secret,
    sessions_page_backwards_with_before,
);
