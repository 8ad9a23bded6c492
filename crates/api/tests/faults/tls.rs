//! TLS to PostgreSQL, against a cluster with `ssl = on` and a certificate from a CA made here:
//! `sslmode=require` connects, `verify-full` connects to the right host name, and a wrong CA
//! or a wrong name stops the start at once, with an error that names the cause and leaves out
//! the password.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use chatstore_tests::{PgCluster, ServerProcess};
use serde_json::json;

use crate::{binary, client, post_items, read_items};

const PASSWORD: &str = "tls-test-password-7d2e";

/// Runs `openssl` in `dir` with `args` (words without spaces: file names in `dir`).
fn openssl(dir: &Path, args: &str) {
    let args: Vec<&str> = args.split_whitespace().collect();
    let output = Command::new("openssl").args(&args).current_dir(dir).output().unwrap();
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The options of `openssl req` for a new P-256 key, unencrypted.
const NEW_KEY: &str = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";

/// Makes a CA (`NAME.crt`, `NAME.key`) in `dir`.
fn make_ca(dir: &Path, name: &str) {
    openssl(
        dir,
        &format!("req -x509 {NEW_KEY} -keyout {name}.key -out {name}.crt -days 2 -subj /CN={name}"),
    );
}

/// Makes `server.crt` and `server.key` for the host name `localhost` only, signed by `ca`.
fn make_server_certificate(dir: &Path, ca: &str) {
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName = DNS:localhost\nbasicConstraints = CA:FALSE\n\
         keyUsage = digitalSignature\nextendedKeyUsage = serverAuth\n",
    )
    .unwrap();
    openssl(dir, &format!("req {NEW_KEY} -keyout server.key -out server.csr -subj /CN=localhost"));
    openssl(
        dir,
        &format!(
            "x509 -req -in server.csr -CA {ca}.crt -CAkey {ca}.key -set_serial 2 -days 2 \
             -extfile server.ext -out server.crt"
        ),
    );
}

/// A cluster that speaks TLS and lets the user `app` in over TLS only, with a password.
async fn tls_cluster() -> Option<PgCluster> {
    let cluster = PgCluster::init(&[
        "ssl = on",
        "ssl_cert_file = 'server.crt'",
        "ssl_key_file = 'server.key'",
        "password_encryption = 'scram-sha-256'",
    ])?;
    make_ca(cluster.dir(), "test-ca");
    make_ca(cluster.dir(), "other-ca");
    make_server_certificate(cluster.dir(), "test-ca");
    for file in ["server.crt", "server.key"] {
        cluster.write_file(file, &std::fs::read_to_string(cluster.dir().join(file)).unwrap());
    }
    cluster.write_file(
        "pg_hba.conf",
        "local all all trust\n\
         host all postgres 127.0.0.1/32 trust\n\
         hostssl all app 127.0.0.1/32 scram-sha-256\n\
         hostssl all app ::1/128 scram-sha-256\n",
    );
    cluster.start();
    cluster
        .execute(&[
            &format!("CREATE ROLE app LOGIN PASSWORD '{PASSWORD}'"),
            "CREATE DATABASE chat OWNER app",
        ])
        .await;
    Some(cluster)
}

/// The server starts on `url` and stores and reads back an item.
async fn serves(url: &str) {
    let server = ServerProcess::start(binary(), url, &[]);
    let client = client();
    let write =
        post_items(&client, &server.address, "tls", &[json!({"n": 1})], None).await.unwrap();
    assert_eq!(write.status, 200, "{}", write.text);
    assert!(read_items(&client, &server.address, "tls").await.contains(&json!({"n": 1})));
    server.stop();
}

/// The server, started on `url`, exits at once (well before the startup timeout) with an error
/// that says `cause`, and never shows the password.
fn refuses_to_start(url: &str, cause: &str) {
    let started = Instant::now();
    let mut server =
        ServerProcess::spawn(binary(), url, &[("APP__DATABASE__STARTUP_TIMEOUT_SECS", "60")]);
    let exit = server.wait_for_exit(Duration::from_secs(20));
    let log = server.log();
    let exit = exit.unwrap_or_else(|| panic!("{url}: the server kept trying:\n{log}"));
    assert!(!exit.success(), "{log}");
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(log.contains("cannot connect to the database at postgres://app:***@"), "{log}");
    assert!(log.contains(cause), "the error does not say {cause:?}:\n{log}");
    assert!(!log.contains(PASSWORD), "the password leaked:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_to_postgres_is_verified_when_asked_and_refused_when_wrong() {
    let Some(cluster) = tls_cluster().await else { return };
    let port = cluster.port();
    let ca = cluster.dir().join("test-ca.crt");
    let other_ca = cluster.dir().join("other-ca.crt");
    let url =
        |host: &str, query: &str| format!("postgres://app:{PASSWORD}@{host}:{port}/chat?{query}");

    // Encrypted but unverified (the server only lets `app` in over TLS).
    serves(&url("127.0.0.1", "sslmode=require")).await;
    // Verified: the certificate chains to the CA given and names the host connected to.
    serves(&url("localhost", &format!("sslmode=verify-full&sslrootcert={}", ca.display()))).await;

    let wrong_ca =
        url("localhost", &format!("sslmode=verify-full&sslrootcert={}", other_ca.display()));
    let wrong_name = url("127.0.0.1", &format!("sslmode=verify-full&sslrootcert={}", ca.display()));
    tokio::task::spawn_blocking(move || {
        refuses_to_start(&wrong_ca, "UnknownIssuer");
        refuses_to_start(&wrong_name, "not valid for name");
        drop(cluster);
    })
    .await
    .unwrap();
}
