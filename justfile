# chatstore's everyday commands. `just` lists them. (Install just with `pip install rust-just`
# or `cargo install just`; every recipe is a plain command you can also run by hand.)

# The embedded SQLite file `cargo run` uses, unless DATABASE_URL says otherwise.
export DATABASE_URL := env("DATABASE_URL", "sqlite://chatstore.db?mode=rwc")

default:
    @just --list

# Serve the API (embedded SQLite unless DATABASE_URL is set).
serve:
    cargo run -p chatstore -- serve

# Print a development JWT for USER.
token USER:
    @cargo run -q -p chatstore -- token {{USER}}

# Run the migration CLI against DATABASE_URL: up, down [-n N], status, fresh, refresh, reset.
migrate *ARGS="up":
    cargo run -q -p migration -- {{ARGS}}

# Every test: Rust on SQLite and PostgreSQL, then the Python and TypeScript clients.
test:
    scripts/test

# Regenerate the TypeScript client's API types from the server's OpenAPI document.
ts-generate:
    clients/typescript/scripts/generate

# Take the README's console screenshots (docs/console-*.png): light and dark, laptop and
# phone, in headless chromium (apt-get install chromium chromium-driver).
console-screenshots:
    CONSOLE_SCREENSHOTS="{{justfile_directory()}}/docs" cargo test -p chatstore-tests --test suite console_browser::screenshots

# Formatting and lints, as CI runs them.
lint:
    cargo fmt --all --check
    cargo clippy --workspace --all-targets -- -D warnings

# Format the code.
fmt:
    cargo fmt --all

# Run the benchmarks (release build, real servers, fresh databases) and rewrite BENCHMARKS.md,
# with its charts in docs/bench/*.svg. `just bench --only growth,turns` re-measures those
# sections and replaces just them in the existing file. Needs PostgreSQL and pgbench; the SQLite
# table also a Python with openai-agents (the clients/python/.venv that scripts/python-tests
# makes, or CHATSTORE_BENCH_PYTHON); the ChatKit table a Python with
# crates/bench/peers/requirements.txt (`python3 -m venv crates/bench/peers/.venv &&
# crates/bench/peers/.venv/bin/pip install -r crates/bench/peers/requirements.txt`, or
# CHATSTORE_BENCH_CHATKIT_PYTHON). The growth table loads 10 million items (about half an hour
# on a busy 2-core machine; `--growth-users 100` for 1 million).
bench *ARGS:
    cargo build --release -p chatstore -p bench
    target/release/chatstore-bench --out BENCHMARKS.md {{ARGS}}

# Fuzz every parser target for SECONDS each, one after another on one core (needs cargo-fuzz:
# `cargo install cargo-fuzz`). Works on stable Rust (no sanitizer); crashes land in
# fuzz/artifacts/TARGET/. `just fuzz 600 jwt` runs one target for ten minutes.
fuzz SECONDS="30" *TARGETS="session_items chatkit_objects ids_cursors_keys jwt timestamps":
    #!/usr/bin/env bash
    set -euo pipefail
    cd fuzz
    for target in {{TARGETS}}; do
        echo "fuzz: $target for {{SECONDS}} s"
        cargo fuzz run --sanitizer none "$target" -- \
            -max_total_time={{SECONDS}} -max_len=4096 -dict=tokens.dict
    done
