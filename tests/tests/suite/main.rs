//! The cross-crate suite, compiled as one test binary (one link, shared harness).

mod auth;
mod errors;
mod migrations;
mod operations;
mod sessions;
