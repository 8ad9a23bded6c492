//! The ChatKit store routes and the Rust `Store` over the repositories, on both databases.
