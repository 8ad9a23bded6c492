//! Advanced agent memory: what a fork, a branch's latest-N read and a compaction cost as a
//! conversation grows from 100 to 100,000 items.

use std::fmt::Write as _;
use std::time::Instant;

use anyhow::Context;
use chatstore_tests::{Backend, TestApp, TestDatabase};
use repositories::sea_orm::ConnectionTrait;
use serde_json::{Value, json};

use crate::{Args, Series, load_session, time_gets, write_row};

const SHORT: usize = 100;
const LONG: usize = 100_000;

pub(crate) async fn memory(args: &Args, report: &mut String) -> anyhow::Result<()> {
    let mut forks = String::new();
    let mut reads = String::new();
    let mut compactions = String::new();
    for backend in [Backend::Postgres, Backend::Sqlite] {
        let database = TestDatabase::create(backend).await.context("no PostgreSQL to benchmark")?;
        let outcome = async {
            let mut app = TestApp::spawn(&database, |settings| {
                settings.database.max_connections = 16;
            })
            .await;
            load_session(&app, "bench", "short", SHORT).await?;
            load_session(&app, "bench", "long", LONG).await?;
            measure(&app, backend, args, (&mut forks, &mut reads, &mut compactions)).await?;
            app.stop().await?;
            anyhow::Ok(())
        }
        .await;
        database.drop_database().await;
        outcome?;
    }
    let header = "| database | 100 items p50 | p99 | mean | 100,000 items p50 | p99 | mean | ratio (p50) |\n\
                  |---|---|---|---|---|---|---|---|";
    let _ = writeln!(
        report,
        "### Forking a conversation\n\n`POST /sessions/{{id}}/branches` at the conversation's last turn, \
         on a session of 100 and of 100,000 items; {} rounds of {} forks each, alternating. Target: \
         about the same.\n\n{header}\n{forks}",
        args.rounds,
        args.requests / 4
    );
    let _ = writeln!(
        report,
        "### The latest 50 items of a branch\n\n`GET /sessions/{{id}}/items?limit=50` on a 100,000-item \
         session (left) and `GET /sessions/{{id}}/branches/{{b}}/items?limit=50` on a branch of it \
         forked at its last turn, with 10 items of its own, so the read spans shared and own items \
         (right); {} rounds of {} requests each, alternating. Target: about the same.\n\n\
         | database | main p50 | p99 | mean | branch p50 | p99 | mean | ratio (p50) |\n\
         |---|---|---|---|---|---|---|---|\n{reads}",
        args.rounds, args.requests
    );
    let _ = writeln!(
        report,
        "### Compaction\n\nOne compaction as `ChatstoreSession._get_compaction_snapshot` does it: \
         `GET /sessions/{{id}}/snapshot?limit=3`, then `POST /sessions/{{id}}/replace` of the last 2 \
         items by 2 others at that revision (so the history keeps its length), on a session of 100 \
         and of 100,000 items; {} rounds of {} compactions each, alternating. Target: about the \
         same.\n\n{header}\n{compactions}",
        args.rounds,
        args.requests / 4
    );
    let _ = writeln!(
        report,
        "Why: a branch is main's items up to its fork point plus rows of its own, so a fork \
         writes one row, and finds its turn in `session_turn_starts` (main's turn starts, \
         recorded by the first fork that needs them); a branch's latest 50 are one statement of \
         two key ranges bounded by the branch's row, a constant factor over main's one range \
         (it does not grow with the history); a replace deletes and inserts only the replaced positions \
         under a revision check (a prefix prune raises the session's `position_base`, never \
         renumbers)."
    );
    Ok(())
}

async fn measure(
    app: &TestApp,
    backend: Backend,
    args: &Args,
    (forks, reads, compactions): (&mut String, &mut String, &mut String),
) -> anyhow::Result<()> {
    // Forks: at the last turn (items alternate user, assistant).
    let mut names = 0usize;
    let mut fork = async |session: &str, items: usize, series: &mut Series| {
        names += 1;
        let body = json!({ "branch_id": format!("b{names}"), "turn": items / 2 }).to_string();
        let path = format!("/sessions/{session}/branches");
        let started = Instant::now();
        let answer = app.post(&path, "bench", &body).await;
        anyhow::ensure!(answer.status == 201, "fork answered {}: {}", answer.status, answer.text);
        series.samples.push(started.elapsed());
        anyhow::Ok(())
    };
    let (mut short, mut long) = (Series::default(), Series::default());
    for _ in 0..5 {
        fork("short", SHORT, &mut Series::default()).await?;
        fork("long", LONG, &mut Series::default()).await?;
    }
    // As autovacuum would after the warm-up filled main's turn starts (it is off on the
    // benchmark's server): without statistics PostgreSQL may scan them for one turn.
    if backend == Backend::Postgres {
        app.db.connection().execute_unprepared("ANALYZE").await?;
    }
    for _ in 0..args.rounds {
        for _ in 0..args.requests / 4 {
            fork("short", SHORT, &mut short).await?;
        }
        for _ in 0..args.requests / 4 {
            fork("long", LONG, &mut long).await?;
        }
    }
    write_row(forks, backend, &short, &long);

    // A branch of the long session with items of its own.
    let body = json!({ "branch_id": "reader", "turn": LONG / 2 }).to_string();
    let answer = app.post("/sessions/long/branches", "bench", &body).await;
    anyhow::ensure!(answer.status == 201, "fork answered {}", answer.status);
    let own: Vec<Value> =
        (0..10).map(|n| json!({ "role": "assistant", "content": format!("own {n}") })).collect();
    let body = json!({ "items": own }).to_string();
    let answer = app.post("/sessions/long/branches/reader/items", "bench", &body).await;
    anyhow::ensure!(answer.status == 200, "branch append answered {}", answer.status);
    let (main_path, branch_path) =
        ("/sessions/long/items?limit=50", "/sessions/long/branches/reader/items?limit=50");
    time_gets(app, main_path, "bench", 20, &mut Series::default()).await?;
    time_gets(app, branch_path, "bench", 20, &mut Series::default()).await?;
    let (mut main, mut branch) = (Series::default(), Series::default());
    for _ in 0..args.rounds {
        time_gets(app, main_path, "bench", args.requests, &mut main).await?;
        time_gets(app, branch_path, "bench", args.requests, &mut branch).await?;
    }
    write_row(reads, backend, &main, &branch);

    let compact = async |session: &str, series: &mut Series| {
        let started = Instant::now();
        let snapshot = app.get(&format!("/sessions/{session}/snapshot?limit=3"), "bench").await;
        anyhow::ensure!(snapshot.status == 200, "snapshot answered {}", snapshot.status);
        let snapshot = snapshot.json();
        let first = snapshot["first_position"].as_i64().context("a first position")?;
        let body = json!({
            "revision": snapshot["revision"],
            "after_position": first,
            "items": [{ "role": "assistant", "content": "summary" },
                      { "type": "compaction", "encrypted_content": "x" }],
        })
        .to_string();
        let answer = app.post(&format!("/sessions/{session}/replace"), "bench", &body).await;
        anyhow::ensure!(
            answer.status == 200,
            "replace answered {}: {}",
            answer.status,
            answer.text
        );
        series.samples.push(started.elapsed());
        anyhow::Ok(())
    };
    let (mut short, mut long) = (Series::default(), Series::default());
    for _ in 0..5 {
        compact("short", &mut Series::default()).await?;
        compact("long", &mut Series::default()).await?;
    }
    for _ in 0..args.rounds {
        for _ in 0..args.requests / 4 {
            compact("short", &mut short).await?;
        }
        for _ in 0..args.requests / 4 {
            compact("long", &mut long).await?;
        }
    }
    write_row(compactions, backend, &short, &long);
    Ok(())
}
