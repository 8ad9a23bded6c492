//! The web console in a real browser: Debian's `chromium`, headless, driven through WebDriver
//! (`chromedriver`) against the real server on each database.
//!
//! Without chromium and chromedriver these tests skip with a loud warning, except under
//! `CI=true`, where they fail (`.ci/run` installs both). `CONSOLE_SCREENSHOTS=DIR` makes
//! `screenshots` write the README's pictures (`just console-screenshots`).

use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use base64::Engine as _;
use chatstore_tests::{Backend, TestApp, dual_backend_tests, free_port, in_ci, with_app};
use fantoccini::{Client, ClientBuilder, Locator};
use futures::FutureExt as _;
use serde_json::{Value, json};

/// A small PNG (a yellow disc on blue), to show as an attachment.
const PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAGAAAABgCAIAAABt+uBvAAAA/0lEQVR42u3cUQ0CMRAE0JGDCDQhDCXIQQIOCKTt9XbvJaPgfXZnmvvjJV8SBIAAAQIECBAgQAIIECBAgAABAiSASgC9n7ffcyGgv1y2S6WKyy6pFNU5zChFaQ5jSnWd1UapTrOaKW10Fhmlk84KozTTmW6UfjpzjQAdBXQqnYlG6aozywjQeqDT6kwxSm+dcSNAgDYCldAZNAIEaBdQIZ0RI0CAAAECBAgQIECAAAECBAjQdYC8BwEC5Krh7AOoOpDbvHYHIA0zHUUlzh5AetKa9rYa1j72YhaHnRaHNqtWz3bzfl7wdwcgQIAAAQIESAABAgQIECBAgAQQoFn5AKjeeQpxH9iwAAAAAElFTkSuQmCC";

const LAPTOP: (u32, u32) = (1280, 800);
const PHONE: (u32, u32) = (390, 844);

/// One browser at a time: chromium is heavy, and the machines have few cores.
fn browser_slot() -> &'static tokio::sync::Semaphore {
    static SLOT: OnceLock<tokio::sync::Semaphore> = OnceLock::new();
    SLOT.get_or_init(|| tokio::sync::Semaphore::new(1))
}

/// The first of `candidates` that exists, or the first found on PATH.
fn find_program(candidates: &[&str]) -> Option<PathBuf> {
    for candidate in candidates {
        let path = PathBuf::from(candidate);
        if path.is_absolute() && path.exists() {
            return Some(path);
        }
        if let Some(paths) = std::env::var_os("PATH") {
            for dir in std::env::split_paths(&paths) {
                let full = dir.join(candidate);
                if full.is_file() {
                    return Some(full);
                }
            }
        }
    }
    None
}

/// A headless chromium under a chromedriver of our own; both end when it is dropped.
struct Browser {
    client: Client,
    driver: Child,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Browser {
    /// Starts chromium at `size`, dark when `dark`; `None` (after a loud warning) when
    /// chromium or chromedriver is missing outside CI.
    async fn launch(size: (u32, u32), dark: bool) -> Option<Self> {
        let chromium =
            find_program(&["/usr/lib/chromium/chromium", "chromium", "chromium-browser"]);
        let chromedriver = find_program(&["chromedriver", "/usr/lib/chromium/chromedriver"]);
        let (Some(chromium), Some(chromedriver)) = (chromium, chromedriver) else {
            assert!(
                !in_ci(),
                "CI needs chromium and chromedriver (apt-get install chromium chromium-driver)"
            );
            eprintln!(
                "\n*** SKIPPED: the console's browser tests need Debian's chromium and \
                 chromium-driver (apt-get install -y chromium chromium-driver) ***\n"
            );
            return None;
        };
        let port = free_port();
        let driver = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let mut args = vec![
            "--headless=new".to_owned(),
            // The tests run as root in CI, where chromium's sandbox cannot start.
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--hide-scrollbars".to_owned(),
            format!("--window-size={},{}", size.0, size.1),
        ];
        if dark {
            args.push("--force-dark-mode".to_owned());
            args.push("--blink-settings=preferredColorScheme=0".to_owned());
        } else {
            args.push("--blink-settings=preferredColorScheme=1".to_owned());
        }
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("browserName".into(), json!("chrome"));
        let mut options = json!({"binary": chromium.to_string_lossy(), "args": args});
        if size.0 < 500 {
            // A window cannot be narrower than 500 pixels: a phone is emulated instead.
            options["mobileEmulation"] = json!({
                "deviceMetrics": {"width": size.0, "height": size.1, "pixelRatio": 2.0, "touch": true}
            });
        }
        capabilities.insert("goog:chromeOptions".into(), options);
        let url = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        // chromedriver takes a moment to listen.
        let client = loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(capabilities.clone())
                .connect(&url)
                .await
            {
                Ok(client) => break client,
                Err(err) if started.elapsed() < Duration::from_secs(30) => {
                    let _ = err;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(err) => panic!("chromium did not start under chromedriver: {err}"),
            }
        };
        Some(Self { client, driver })
    }

    /// Runs `script` (a function body) in the page and answers what it returns.
    async fn js(&self, script: &str) -> Value {
        self.client.execute(script, vec![]).await.unwrap_or_else(|err| panic!("{script}: {err}"))
    }

    /// Waits until the expression `condition` is truthy in the page (at most 20 s).
    async fn wait_for(&self, condition: &str, what: &str) {
        let started = Instant::now();
        loop {
            if truthy(&self.js(&format!("return Boolean({condition});")).await) {
                return;
            }
            if started.elapsed() > Duration::from_secs(20) {
                let status = self.js("return document.getElementById('status')?.textContent").await;
                panic!("timed out waiting for {what} ({condition}); status line: {status}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn click(&self, css: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"))
            .click()
            .await
            .unwrap();
    }

    /// Clicks the first element matching `css` whose text contains `text`.
    async fn click_text(&self, css: &str, text: &str) {
        let selector = json!(css);
        let wanted = json!(text);
        self.wait_for(
            &format!("[...document.querySelectorAll({selector})].some(e => e.textContent.includes({wanted}))"),
            &format!("{css} with {text:?}"),
        )
        .await;
        for element in self.client.find_all(Locator::Css(css)).await.unwrap() {
            if element.text().await.unwrap().contains(text) {
                element.click().await.unwrap();
                return;
            }
        }
        panic!("no {css} with {text:?} to click");
    }

    async fn type_into(&self, css: &str, text: &str) {
        let element =
            self.client.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("{css}: {e}"));
        element.clear().await.unwrap();
        element.send_keys(text).await.unwrap();
    }

    async fn text_of(&self, css: &str) -> String {
        let selector = json!(css);
        self.js(&format!("return document.querySelector({selector})?.innerText ?? ''"))
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The titles of the sidebar's list, top to bottom.
    async fn list_titles(&self) -> Vec<String> {
        let titles = self
            .js("return [...document.querySelectorAll('#list .title')].map(e => e.textContent)")
            .await;
        serde_json::from_value(titles).unwrap()
    }

    async fn sign_in_with_token(&self, app: &TestApp, user: &str) {
        self.client.goto(&app.url("/console")).await.unwrap();
        self.wait_for("!document.getElementById('sign-in').hidden", "the sign-in form").await;
        self.type_into("#token-input", &app.token(user)).await;
        self.click("#token-form button[type=submit]").await;
        self.wait_for_user(user).await;
    }

    async fn wait_for_user(&self, user: &str) {
        let wanted = json!(format!("Signed in as {user}"));
        self.wait_for(
            &format!("document.getElementById('who').textContent === {wanted}"),
            "the signed-in user",
        )
        .await;
    }

    async fn sign_out(&self) {
        self.click("#sign-out").await;
        self.wait_for("!document.getElementById('sign-in').hidden", "the sign-in form").await;
    }

    async fn close(self) {
        let client = self.client.clone();
        let _ = client.close().await;
    }
}

fn truthy(value: &Value) -> bool {
    value.as_bool().unwrap_or(false)
}

/// Runs `test` with a browser, closing it however the test ends; skips without chromium.
async fn with_browser(size: (u32, u32), dark: bool, test: impl AsyncFnOnce(&Browser)) {
    let _slot = browser_slot().acquire().await.unwrap();
    let Some(browser) = Browser::launch(size, dark).await else { return };
    let outcome = AssertUnwindSafe(test(&browser)).catch_unwind().await;
    browser.close().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

async fn post_json(app: &TestApp, path: &str, user: &str, body: &Value) -> Value {
    let answer = app.post(path, user, &body.to_string()).await;
    assert!(answer.status < 300, "{path}: {} {}", answer.status, answer.text);
    if answer.text.is_empty() { Value::Null } else { answer.json() }
}

async fn put_json(app: &TestApp, path: &str, user: &str, body: &Value) {
    let answer = app.send(reqwest::Method::PUT, path, user, Some(&body.to_string())).await;
    assert!(answer.status < 300, "{path}: {} {}", answer.status, answer.text);
}

/// Stores an image attachment for `user` through ChatKit's upload flow; answers its signed
/// preview URL.
async fn upload_image(app: &TestApp, user: &str) -> String {
    let bytes = base64::engine::general_purpose::STANDARD.decode(PNG).unwrap();
    let created = post_json(
        app,
        "/chatkit",
        user,
        &json!({"type": "attachments.create", "params": {"name": "disc.png", "size": bytes.len(), "mime_type": "image/png"}}),
    )
    .await;
    let upload = created["upload_descriptor"]["url"].as_str().unwrap();
    let uploaded = app
        .client
        .put(upload)
        .header("content-type", "image/png")
        .body(bytes)
        .send()
        .await
        .unwrap();
    assert!(uploaded.status().is_success(), "upload: {}", uploaded.status());
    created["preview_url"].as_str().unwrap().to_owned()
}

/// Ada's data: a planning chat with reasoning, a tool call and an image, and a work chat.
async fn seed(app: &TestApp) {
    let image = upload_image(app, "ada").await;
    post_json(
        app,
        "/chats",
        "ada",
        &json!({"chat_id": "trip", "title": "Trip planning", "tags": ["travel"]}),
    )
    .await;
    let items = json!([
        {"role": "user", "content": [
            {"type": "input_text", "text": "Where is this, and what is the weather there?"},
            {"type": "input_image", "image_url": image, "detail": "auto"}
        ]},
        {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "The picture looks like a sunny harbour."}]},
        {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{\"city\":\"Lisbon\"}"},
        {"type": "function_call_output", "call_id": "call_1", "output": "{\"forecast\":\"sunny, 24 C\"}"},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Lisbon: sunny, 24 C.", "annotations": []}]}
    ]);
    post_json(app, "/sessions/trip/items", "ada", &json!({"items": items})).await;
    post_json(
        app,
        "/chats",
        "ada",
        &json!({"chat_id": "work", "title": "Quarterly report", "tags": ["work"]}),
    )
    .await;
    post_json(
        app,
        "/sessions/work/items",
        "ada",
        &json!({"items": [{"role": "user", "content": "Summarize the quarter."}, {"role": "assistant", "content": "Revenue grew 12%."}]}),
    )
    .await;
}

async fn signs_in_lists_reads_talks_deletes_and_restores(backend: Backend) {
    with_app(backend, async |app| {
        seed(app).await;
        with_browser(LAPTOP, false, async |browser| {
            // Sign in with a token typed in; ada's chats are listed, most recently updated first.
            browser.sign_in_with_token(app, "ada").await;
            browser.wait_for("document.querySelectorAll('#list .title').length === 2", "two chats").await;
            assert_eq!(browser.list_titles().await, ["Quarterly report", "Trip planning"]);
            assert!(browser.text_of("#list").await.contains("travel"), "the tags are shown");

            // The tag filter narrows the list.
            browser.type_into("#tag-input", "travel").await;
            browser.wait_for("document.querySelectorAll('#list .title').length === 1", "the filtered list").await;
            assert_eq!(browser.list_titles().await, ["Trip planning"]);
            browser.type_into("#tag-input", "").await;
            browser.wait_for("document.querySelectorAll('#list .title').length === 2", "the whole list").await;

            // Open the conversation: messages, reasoning, the tool call collapsed, the image.
            browser.click_text("#list .open", "Trip planning").await;
            browser.wait_for("document.querySelectorAll('#transcript .item').length === 4", "the conversation").await;
            let transcript = browser.text_of("#transcript").await;
            assert!(transcript.contains("Where is this, and what is the weather there?"), "{transcript}");
            assert!(transcript.contains("Lisbon: sunny, 24 C."), "{transcript}");
            assert!(transcript.contains("Reasoning"), "{transcript}");
            assert!(transcript.contains("Tool call: get_weather"), "{transcript}");
            let tool = "[...document.querySelectorAll('#transcript .tool > details')].find(d => d.textContent.includes('get_weather'))";
            assert!(!truthy(&browser.js(&format!("return {tool}.open")).await), "tool calls start collapsed");
            assert!(!transcript.contains("sunny, 24 C\"}"), "the output is hidden while collapsed");
            browser.click("#transcript .tool > details > summary").await;
            browser.wait_for(&format!("{tool}.open"), "the opened tool call").await;
            let tool_text = browser.js(&format!("return {tool}.innerText")).await;
            let tool_text = tool_text.as_str().unwrap();
            assert!(tool_text.contains("\"city\": \"Lisbon\""), "{tool_text}");
            assert!(tool_text.contains("\"forecast\": \"sunny, 24 C\""), "{tool_text}");
            // The image comes from its signed URL and really loads.
            browser
                .wait_for("document.querySelector('#transcript img')?.complete && document.querySelector('#transcript img').naturalWidth === 96", "the image")
                .await;
            // The raw JSON of an item, on demand.
            browser.click("#transcript .raw > summary").await;
            browser.wait_for("document.querySelector('#transcript .raw').open", "the raw JSON").await;
            assert!(browser.text_of("#transcript .raw pre").await.contains("\"input_image\""));

            // Soft delete the work chat, then restore it; the database follows.
            browser.click("#list li[data-id='work'] button.danger").await;
            browser.wait_for("!document.querySelector(\"#list li[data-id='work']\")", "the deleted chat to go").await;
            assert!(!app.chat_row("ada", "work").await.unwrap().is_active);
            browser.click("#show-deleted").await;
            browser.wait_for("document.querySelector(\"#list li[data-id='work'].inactive\")", "the deleted chat").await;
            browser.click_text("#list li[data-id='work'] button", "Restore").await;
            browser.wait_for("document.querySelector(\"#list li[data-id='work']:not(.inactive)\")", "the restored chat").await;
            assert!(app.chat_row("ada", "work").await.unwrap().is_active);
            assert!(app.chat_row("ada", "trip").await.unwrap().is_active, "only that chat changed");

            // Talk: a new thread, the echo answer streamed into the page, the thread stored.
            browser.click("#tab-threads").await;
            browser.click("#new-thread").await;
            browser.type_into("#composer-input", "hello from the console").await;
            browser.click("#send").await;
            browser
                .wait_for(
                    "[...document.querySelectorAll('#transcript .message.assistant')].some(e => e.textContent.includes('hello from the console'))",
                    "the streamed answer",
                )
                .await;
            browser.wait_for("document.querySelectorAll('#list li[data-kind=thread]').length === 1", "the new thread in the list").await;
            browser.wait_for("!document.getElementById('send').disabled", "the end of the stream").await;
            let threads = app.get("/threads", "ada").await.json();
            let thread_id = threads["data"][0]["id"].as_str().unwrap().to_owned();
            let items = app.get(&format!("/threads/{thread_id}/items"), "ada").await.json();
            let kinds: Vec<&str> = items["data"].as_array().unwrap().iter().map(|i| i["type"].as_str().unwrap()).collect();
            assert_eq!(kinds, ["user_message", "assistant_message"]);
            // A second message goes to the same thread.
            browser.type_into("#composer-input", "and again").await;
            browser.click("#send").await;
            browser
                .wait_for(
                    "[...document.querySelectorAll('#transcript .message.assistant')].some(e => e.textContent.includes('and again'))",
                    "the second answer",
                )
                .await;
            // The answer shows while it streams; the stream ends after the items are saved.
            browser.wait_for("!document.getElementById('send').disabled", "the end of the stream").await;
            let items = app.get(&format!("/threads/{thread_id}/items"), "ada").await.json();
            assert_eq!(items["data"].as_array().unwrap().len(), 4);

            // Deleting a thread asks first; Cancel keeps it, confirming deletes it.
            browser.click(&format!("#list li[data-id='{thread_id}'] button.danger")).await;
            browser.click_text("#list .confirm button", "Cancel").await;
            assert_eq!(app.get(&format!("/threads/{thread_id}"), "ada").await.status, 200);
            browser.click(&format!("#list li[data-id='{thread_id}'] button.danger")).await;
            browser.click_text("#list .confirm button", "Delete for good").await;
            browser.wait_for("document.querySelectorAll('#list li[data-kind=thread]').length === 0", "the thread to go").await;
            app.get(&format!("/threads/{thread_id}"), "ada").await.assert_error(404, "not_found");

            // Sign in from a `#token=` link: the token leaves the address bar at once.
            browser.sign_out().await;
            browser.client.goto(&app.url(&format!("/console#token={}", app.token("ada")))).await.unwrap();
            browser.wait_for_user("ada").await;
            let address = browser.client.current_url().await.unwrap();
            assert!(!address.as_str().contains("token"), "{address}");
            assert_eq!(browser.js("return window.location.hash").await, json!(""));
            // The token is kept for the tab only: never in localStorage or a cookie.
            assert_eq!(browser.js("return localStorage.length").await, json!(0));
            assert_eq!(browser.js("return document.cookie").await, json!(""));

            // Sign in by name on a development server: bob sees none of ada's chats.
            browser.sign_out().await;
            browser.wait_for("!document.getElementById('dev-form').hidden", "the development sign-in").await;
            browser.type_into("#dev-user", "bob").await;
            browser.click("#dev-form button[type=submit]").await;
            browser.wait_for_user("bob").await;
            browser.wait_for("document.querySelector('#list .empty')", "bob's empty list").await;
            assert!(browser.list_titles().await.is_empty());

            // A refused token is said so, and signs nobody in.
            browser.sign_out().await;
            browser.type_into("#token-input", "not-a-token").await;
            browser.click("#token-form button[type=submit]").await;
            browser.wait_for("document.getElementById('status').dataset.kind === 'error'", "the refusal").await;
            assert!(!truthy(&browser.js("return !document.getElementById('workspace').hidden").await));
        })
        .await;
    })
    .await;
}

async fn hostile_items_are_shown_as_text_and_nothing_runs(backend: Backend) {
    with_app(backend, async |app| {
        let script = "<script>window.__pwned = 'script'</script>";
        let image = "<img src=x onerror=\"window.__pwned = 'img'\">";
        let svg = "<svg onload=\"window.__pwned = 'svg'\"></svg>";
        post_json(app, "/chats", "eve", &json!({"chat_id": "xss", "title": image, "tags": [svg]})).await;
        let items = json!([
            {"role": "user", "content": script},
            {"role": "assistant", "content": [{"type": "output_text", "text": image}]},
            {"type": "function_call", "call_id": "c", "name": svg, "arguments": image},
            {"type": script, "payload": image},
            {"role": "user", "content": [{"type": "input_image", "image_url": "javascript:window.__pwned='url'"}]}
        ]);
        post_json(app, "/sessions/xss/items", "eve", &json!({"items": items})).await;
        put_json(
            app,
            "/threads/thr_xss",
            "eve",
            &json!({"id": "thr_xss", "title": script, "created_at": "2026-01-01T00:00:00", "status": {"type": "active"}, "metadata": {}}),
        )
        .await;
        post_json(
            app,
            "/threads/thr_xss/items",
            "eve",
            &json!({"id": "msg_x", "thread_id": "thr_xss", "created_at": "2026-01-01T00:00:01", "type": "user_message",
                    "content": [{"type": "input_text", "text": image}], "attachments": [], "inference_options": {}}),
        )
        .await;

        with_browser(LAPTOP, false, async |browser| {
            browser.sign_in_with_token(app, "eve").await;
            browser.click_text("#list .open", "<img").await;
            browser.wait_for("document.querySelectorAll('#transcript .item').length === 5", "the hostile chat").await;
            // Open every collapsed block, so their contents are in the rendered page too.
            browser.js("document.querySelectorAll('details').forEach(d => d.open = true); return null").await;
            browser.click("#tab-threads").await;
            browser.click_text("#list .open", "<script>").await;
            browser.wait_for("document.querySelectorAll('#transcript .item').length === 1", "the hostile thread").await;
            browser.js("document.querySelectorAll('details').forEach(d => d.open = true); return null").await;
            browser.click("#tab-chats").await;
            browser.click_text("#list .open", "<img").await;
            browser.wait_for("document.querySelectorAll('#transcript .item').length === 5", "the hostile chat again").await;
            browser.js("document.querySelectorAll('details').forEach(d => d.open = true); return null").await;
            // Give an injected handler every chance to run.
            tokio::time::sleep(Duration::from_millis(500)).await;

            assert_eq!(browser.js("return typeof window.__pwned").await, json!("undefined"));
            // The only script is the console's own, and no injected element exists.
            assert_eq!(browser.js("return document.scripts.length").await, json!(1));
            assert_eq!(browser.js("return document.querySelectorAll('svg, img[src=x], [onerror], [onload]').length").await, json!(0));
            assert_eq!(browser.js("return document.querySelectorAll('#transcript img, #list img').length").await, json!(0));
            // The text is there, as text.
            let shown = browser.text_of("body").await;
            for hostile in [script, image, svg] {
                assert!(shown.contains(hostile), "{hostile} is not shown as text");
            }
        })
        .await;
    })
    .await;
}

/// Integers past 2^53 (64-bit ids in items and in a tool call's arguments) are shown with the
/// digits that were stored, not rounded to the nearest double.
async fn large_integers_are_shown_as_stored(backend: Backend) {
    with_app(backend, async |app| {
        post_json(app, "/chats", "ida", &json!({"chat_id": "ids", "title": "Order lookup"})).await;
        let body = r#"{"items": [
            {"role": "user", "content": "where is my order?", "trace_id": 9007199254740993},
            {"type": "function_call", "call_id": "c1", "name": "lookup",
             "arguments": "{\"order_id\": 12345678901234567891}"}
        ]}"#;
        let answer = app.post("/sessions/ids/items", "ida", body).await;
        assert_eq!(answer.status, 200, "{}", answer.text);

        with_browser(LAPTOP, false, async |browser| {
            browser.sign_in_with_token(app, "ida").await;
            browser.click_text("#list .open", "Order lookup").await;
            browser
                .wait_for("document.querySelectorAll('#transcript .item').length === 2", "the chat")
                .await;
            browser
                .js("document.querySelectorAll('details').forEach(d => d.open = true); return null")
                .await;
            let shown = browser.text_of("#transcript").await;
            for stored in ["9007199254740993", "12345678901234567891"] {
                assert!(shown.contains(stored), "{stored} is not shown as stored:\n{shown}");
            }
            for rounded in ["9007199254740992", "12345678901234567000", "12345678901234568000"] {
                assert!(!shown.contains(rounded), "{rounded} (rounded) is shown:\n{shown}");
            }
        })
        .await;
    })
    .await;
}

/// WebDriver's keys for Tab and Enter.
const TAB: &str = "\u{e004}";
const ENTER: &str = "\u{e007}";

/// Signing in and opening a conversation with the keyboard alone, with a visible focus; and
/// an image whose signed link no longer works says so instead of showing a broken picture.
async fn works_from_the_keyboard_and_explains_broken_images(backend: Backend) {
    with_app(backend, async |app| {
        let gone = app.url("/attachments/atc_gone/content?user=kay&expires=1&signature=00");
        post_json(app, "/chats", "kay", &json!({"chat_id": "pics", "title": "Pictures"})).await;
        let items = json!([{"role": "user", "content": [{"type": "input_image", "image_url": gone}]}]);
        post_json(app, "/sessions/pics/items", "kay", &json!({"items": items})).await;
        with_browser(LAPTOP, false, async |browser| {
            browser.client.goto(&app.url("/console")).await.unwrap();
            browser.wait_for("!document.getElementById('sign-in').hidden", "the sign-in form").await;
            let field = browser.client.find(Locator::Css("#token-input")).await.unwrap();
            field.send_keys(&app.token("kay")).await.unwrap();
            field.send_keys(TAB).await.unwrap();
            // Tab reaches the form's button, whose focus is drawn.
            browser.wait_for("document.activeElement.matches('#token-form button')", "focus on the button").await;
            assert_eq!(
                browser.js("return getComputedStyle(document.activeElement).outlineStyle").await,
                json!("solid"),
                "a keyboard focus is visible"
            );
            let button = browser.client.find(Locator::Css("#token-form button")).await.unwrap();
            button.send_keys(ENTER).await.unwrap();
            browser.wait_for_user("kay").await;
            browser.wait_for("document.querySelector('#list .open')", "the list").await;
            // Every control of the list is a real button, so Enter opens a conversation.
            browser.js("document.querySelector('#list .open').focus(); return null").await;
            let open = browser.client.find(Locator::Css("#list .open")).await.unwrap();
            open.send_keys(ENTER).await.unwrap();
            browser.wait_for("document.querySelectorAll('#transcript .item').length === 1", "the conversation").await;
            browser
                .wait_for("document.querySelector('#transcript figcaption')?.textContent.includes('could not be loaded')", "the note")
                .await;
            assert_eq!(browser.js("return document.querySelectorAll('#transcript img').length").await, json!(0));
            // Arrow keys move between the tabs.
            browser.js("document.getElementById('tab-chats').focus(); return null").await;
            let tab = browser.client.find(Locator::Css("#tab-chats")).await.unwrap();
            tab.send_keys("\u{e014}").await.unwrap(); // ArrowRight
            browser.wait_for("document.getElementById('tab-threads').getAttribute('aria-selected') === 'true'", "the threads tab").await;
        })
        .await;
    })
    .await;
}

/// The search box finds a chat by what was said in it and opens it; Export downloads the
/// caller's records.
async fn searches_and_exports(backend: Backend) {
    with_app(backend, async |app| {
        seed(app).await;
        let search = app.get("/search?q=weather", "ada").await;
        let export = app.get("/export", "ada").await;
        with_browser(LAPTOP, false, async |browser| {
            browser.sign_in_with_token(app, "ada").await;
            browser.type_into("#search-input", "weather").await;
            browser.click("#search-form button[type=submit]").await;
            assert_eq!(search.status, 200, "{}", search.text);
            browser
                .wait_for("document.querySelectorAll('#list .title').length > 0", "search results")
                .await;
            assert!(browser.list_titles().await.contains(&"Trip planning".to_owned()));
            browser.click_text("#list .open", "Trip planning").await;
            browser
                .wait_for(
                    "document.querySelectorAll('#transcript .item').length === 4",
                    "the found chat",
                )
                .await;
            browser.click("#export").await;
            assert_eq!(export.status, 200, "{}", export.text);
            browser
                .wait_for(
                    "document.getElementById('status').textContent === 'Export downloaded.'",
                    "the export",
                )
                .await;
        })
        .await;
    })
    .await;
}

/// Long sessions load a page at a time as they are scrolled up, never all at once.
async fn long_sessions_load_page_by_page(backend: Backend) {
    with_app(backend, async |app| {
        let items: Vec<Value> = (1..=200).map(|n| json!({"role": if n % 2 == 1 { "user" } else { "assistant" }, "content": format!("message number {n}")})).collect();
        post_json(app, "/sessions/long/items", "ada", &json!({"items": items})).await;
        with_browser(LAPTOP, false, async |browser| {
            browser.sign_in_with_token(app, "ada").await;
            browser.click_text("#list .open", "(untitled)").await;
            browser.wait_for("document.querySelectorAll('#transcript .item').length > 0", "the first page").await;
            let first = browser.js("return document.querySelectorAll('#transcript .item').length").await.as_i64().unwrap();
            assert!(first < 200, "the whole session was loaded at once ({first} items)");
            assert!(browser.text_of("#transcript").await.contains("message number 200"));
            // Scroll to the top until the beginning is reached.
            for _ in 0..40 {
                browser.js("document.getElementById('transcript').scrollTop = 0; return null").await;
                tokio::time::sleep(Duration::from_millis(150)).await;
                if truthy(&browser.js("return document.querySelectorAll('#transcript .item').length === 200").await) {
                    break;
                }
            }
            browser.wait_for("document.querySelectorAll('#transcript .item').length === 200", "every page").await;
            let order = browser
                .js("return [...document.querySelectorAll('#transcript .item .text')].map(e => Number(e.textContent.split(' ').pop()))")
                .await;
            let order: Vec<i64> = serde_json::from_value(order).unwrap();
            assert_eq!(order, (1..=200).collect::<Vec<_>>(), "pages are put together in order");
            assert!(browser.text_of("#transcript").await.contains("Start of the conversation"));
        })
        .await;
    })
    .await;
}

dual_backend_tests!(
    signs_in_lists_reads_talks_deletes_and_restores,
    hostile_items_are_shown_as_text_and_nothing_runs,
    large_integers_are_shown_as_stored,
    searches_and_exports,
    long_sessions_load_page_by_page,
    works_from_the_keyboard_and_explains_broken_images,
);

/// The README's screenshots, light and dark, laptop and phone: written to
/// `CONSOLE_SCREENSHOTS` when it is set (`just console-screenshots`), else nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn screenshots() {
    let Some(dir) = std::env::var_os("CONSOLE_SCREENSHOTS") else { return };
    let dir = PathBuf::from(dir);
    std::fs::create_dir_all(&dir).unwrap();
    with_app(Backend::Sqlite, async |app| {
        seed(app).await;
        for (scheme, dark) in [("light", false), ("dark", true)] {
            for (device, size) in [("laptop", LAPTOP), ("phone", PHONE)] {
                with_browser(size, dark, async |browser| {
                    browser.sign_in_with_token(app, "ada").await;
                    let wanted = if dark { "true" } else { "false" };
                    assert_eq!(
                        browser
                            .js("return String(matchMedia('(prefers-color-scheme: dark)').matches)")
                            .await,
                        json!(wanted),
                        "the browser's color scheme"
                    );
                    browser.click_text("#list .open", "Trip planning").await;
                    browser
                        .wait_for(
                            "document.querySelector('#transcript img')?.naturalWidth === 96",
                            "the image",
                        )
                        .await;
                    browser.click("#transcript .tool > details > summary").await;
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    let png = browser.client.screenshot().await.unwrap();
                    std::fs::write(dir.join(format!("console-{scheme}-{device}.png")), png)
                        .unwrap();
                })
                .await;
            }
        }
    })
    .await;
}
