//! The ChatKit store: threads, thread items, attachments and item feedback.

use sea_orm::{DbBackend, Statement};

/// The read statements of this module, for checking their query plans.
pub(crate) fn read_statements(_backend: DbBackend) -> Vec<(&'static str, Statement)> {
    Vec::new()
}
