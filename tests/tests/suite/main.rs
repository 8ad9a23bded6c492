//! The cross-crate suite, compiled as one test binary (one link, shared harness).

// A panic in a test is a failed test with a clear location.
#![allow(clippy::unwrap_used)]

mod agent_session;
mod attachment_content;
mod auth;
mod chat_run;
mod chat_tags;
mod chatkit_engine;
mod chatkit_openai;
mod chatkit_protocol;
mod chatkit_steps;
mod chatkit_store;
mod chatkit_stream;
mod chats;
mod connections;
mod console;
mod console_browser;
mod depth;
mod errors;
mod fuzz_regressions;
mod memory;
mod migrations;
mod operations;
mod own_data;
mod plans;
mod review;
mod search;
mod sessions;
