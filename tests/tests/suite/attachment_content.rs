//! Attachment bytes: upload and download with a token or a signed URL, type checks, limits,
//! tenancy.

use chatstore::signed_urls::{Access, UrlSigner};
use chatstore_tests::{Answer, Backend, TestApp, dual_backend_tests, with_app_configured};
use sea_orm::EntityTrait;

const LIMIT: usize = 64 * 1024;

/// Stores attachment metadata for `user` straight in the table.
async fn attachment(app: &TestApp, user: &str, id: &str, mime_type: &str) {
    let now = chrono::Utc::now();
    entity::chatkit_attachment::Entity::insert(entity::chatkit_attachment::ActiveModel {
        user_id: sea_orm::Set(user.to_owned()),
        attachment_id: sea_orm::Set(id.to_owned()),
        thread_id: sea_orm::Set(None),
        name: sea_orm::Set("file".to_owned()),
        mime_type: sea_orm::Set(mime_type.to_owned()),
        created_at: sea_orm::Set(now),
        updated_at: sea_orm::Set(now),
        data: sea_orm::Set(format!(
            r#"{{"id":"{id}","name":"file","mime_type":"{mime_type}","type":"file"}}"#
        )),
    })
    .exec_without_returning(app.db.connection())
    .await
    .unwrap();
}

async fn upload(
    app: &TestApp,
    user: &str,
    id: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> Answer {
    let mut request =
        app.request(reqwest::Method::PUT, &format!("/attachments/{id}/content"), user);
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    Answer::read(request.body(body).send().await.unwrap()).await
}

async fn stored(app: &TestApp) -> Vec<entity::chatkit_attachment_content::Model> {
    entity::chatkit_attachment_content::Entity::find().all(app.db.connection()).await.unwrap()
}

fn limited(settings: &mut chatstore::settings::Settings) {
    settings.attachments.max_bytes = LIMIT;
}

async fn bytes_round_trip_for_their_owner_only(backend: Backend) {
    with_app_configured(backend, limited, async |app| {
        attachment(app, "alice", "atc_png", "image/png").await;
        attachment(app, "alice", "atc_html", "text/html").await;
        let png: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
        assert_eq!(
            upload(app, "alice", "atc_png", Some("image/png"), png.clone()).await.status,
            204
        );

        let response = app
            .request(reqwest::Method::GET, "/attachments/atc_png/content", "alice")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let headers = response.headers().clone();
        assert_eq!(headers["content-type"], "image/png");
        assert_eq!(headers["content-disposition"], "inline");
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert_eq!(response.bytes().await.unwrap().to_vec(), png);

        // Not an image: downloaded, never rendered on our origin.
        assert_eq!(
            upload(
                app,
                "alice",
                "atc_html",
                Some("text/html; charset=utf-8"),
                b"<script>x</script>".to_vec()
            )
            .await
            .status,
            204
        );
        let html = app
            .request(reqwest::Method::GET, "/attachments/atc_html/content", "alice")
            .send()
            .await
            .unwrap();
        assert_eq!(html.headers()["content-disposition"], "attachment");
        assert_eq!(html.headers()["content-security-policy"], "sandbox");

        // A second upload replaces the first.
        assert_eq!(
            upload(app, "alice", "atc_png", Some("image/png"), vec![1, 2, 3]).await.status,
            204
        );
        let again = app
            .request(reqwest::Method::GET, "/attachments/atc_png/content", "alice")
            .send()
            .await
            .unwrap();
        assert_eq!(again.bytes().await.unwrap().to_vec(), vec![1, 2, 3]);

        // Bob sees nothing and can write nothing.
        app.get("/attachments/atc_png/content", "bob").await.assert_error(404, "not_found");
        upload(app, "bob", "atc_png", Some("image/png"), vec![9])
            .await
            .assert_error(404, "not_found");
        let rows = stored(app).await;
        assert_eq!(rows.len(), 2);
        assert!(rows.iter().all(|row| row.user_id == "alice"));
        assert_eq!(
            rows.iter().find(|r| r.attachment_id == "atc_png").unwrap().content,
            vec![1, 2, 3]
        );

        // Deleting the metadata takes the bytes with it.
        entity::chatkit_attachment::Entity::delete_by_id((
            "alice".to_owned(),
            "atc_png".to_owned(),
        ))
        .exec(app.db.connection())
        .await
        .unwrap();
        assert_eq!(stored(app).await.len(), 1);
        app.get("/attachments/atc_png/content", "alice").await.assert_error(404, "not_found");
    })
    .await;
}

async fn bad_uploads_are_refused_and_store_nothing(backend: Backend) {
    with_app_configured(backend, limited, async |app| {
        attachment(app, "alice", "atc_1", "image/png").await;
        upload(app, "alice", "atc_1", Some("image/jpeg"), vec![1])
            .await
            .assert_error(415, "unsupported_media_type");
        upload(app, "alice", "atc_1", None, vec![1])
            .await
            .assert_error(415, "unsupported_media_type");
        upload(app, "alice", "atc_1", Some("image/png"), vec![0; LIMIT + 1])
            .await
            .assert_error(413, "payload_too_large");
        upload(app, "alice", "atc_missing", Some("image/png"), vec![1])
            .await
            .assert_error(404, "not_found");
        app.get("/attachments/atc_1/content", "alice").await.assert_error(404, "not_found");
        let anonymous = Answer::read(
            app.client
                .put(app.url("/attachments/atc_1/content"))
                .header("content-type", "image/png")
                .body(vec![1])
                .send()
                .await
                .unwrap(),
        )
        .await;
        anonymous.assert_error(401, "unauthorized");
        assert!(stored(app).await.is_empty());
    })
    .await;
}

async fn signed_urls_work_without_a_token(backend: Backend) {
    with_app_configured(backend, limited, async |app| {
        attachment(app, "alice", "atc_1", "image/png").await;
        let signer = UrlSigner::new(
            app.settings.attachments.url_signing_secret(),
            app.settings.auth.secret(),
        );
        let expires = chrono::Utc::now().timestamp() + 600;
        let url = |access, user: &str, expires: i64| {
            let signature = signer.sign(access, user, "atc_1", expires).unwrap();
            app.url(&format!(
                "/attachments/atc_1/content?user={user}&expires={expires}&signature={signature}"
            ))
        };
        let put = app
            .client
            .put(url(Access::Upload, "alice", expires))
            .header("content-type", "image/png")
            .body(vec![7, 7])
            .send()
            .await
            .unwrap();
        assert_eq!(put.status(), 204);
        let get = app.client.get(url(Access::Download, "alice", expires)).send().await.unwrap();
        assert_eq!(get.bytes().await.unwrap().to_vec(), vec![7, 7]);

        // An upload URL does not download, Bob's URL edited to name Alice is refused, expired
        // is expired, and a tampered signature is nothing.
        let refused = [
            app.client.get(url(Access::Upload, "alice", expires)),
            app.client.get(url(Access::Download, "bob", expires).replace("user=bob", "user=alice")),
            app.client.get(url(Access::Download, "alice", chrono::Utc::now().timestamp() - 1)),
            app.client
                .get(url(Access::Download, "alice", expires).replace("signature=", "signature=x")),
            app.client
                .put(url(Access::Download, "alice", expires))
                .header("content-type", "image/png")
                .body(vec![1]),
        ];
        for request in refused {
            Answer::read(request.send().await.unwrap()).await.assert_error(401, "unauthorized");
        }
        assert_eq!(stored(app).await[0].content, vec![7, 7]);
    })
    .await;
}

dual_backend_tests!(
    bytes_round_trip_for_their_owner_only,
    bad_uploads_are_refused_and_store_nothing,
    signed_urls_work_without_a_token,
);
