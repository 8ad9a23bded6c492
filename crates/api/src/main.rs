//! `chatstore`: the chatstore server and its operator commands.
//!
//! ```text
//! chatstore serve          # (the default) serve the HTTP API on PORT / the configured port
//! chatstore token alice    # print a development JWT for user "alice"
//! chatstore copy FROM TO   # copy every user's data from one database to another
//! ```
//!
//! Configuration: `config/*.toml`, `APP_ENV`, `APP__SECTION__KEY`, `DATABASE_URL`, `PORT`
//! (see `settings.rs` and the README).

use anyhow::Context;
use chatstore::settings::Settings;
use chatstore::startup::Application;
use chatstore::{auth, telemetry};
use clap::{Parser, Subcommand};

/// mimalloc rather than glibc's malloc: see the dependency's note in Cargo.toml.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(name = "chatstore", version, about = "Durable storage for AI chat applications")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the HTTP API (the default).
    Serve,
    /// Print a JWT for USER that this configuration accepts.
    Token {
        /// The user id (the token's `sub`).
        user: String,
    },
    /// Copy every user's data from one database to another (SQLite to PostgreSQL and back):
    /// migrates both, copies user by user, resumes where an interrupted run stopped, and
    /// verifies per-user record counts and digests at the end.
    Copy {
        /// The database to read (`sqlite://PATH?mode=rwc` or `postgres://...`).
        from: String,
        /// The database to write; each copied user's records there are replaced.
        to: String,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = Settings::load()?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            telemetry::init(&settings.log);
            let application = Application::build(settings).await?;
            let address = application.local_addr();
            let serving = application.run_until_stopped();
            // Scripts wait for this line to know where the server is, and may stop the server
            // as soon as they see it: the signals are caught by now. It comes before the
            // database is open, so they wait for /readyz to serve.
            println!("chatstore listening on http://{address}");
            serving.await
        }
        Command::Token { user } => {
            let token = auth::mint_token(&settings.auth, &user).context("cannot make a token")?;
            println!("{token}");
            Ok(())
        }
        Command::Copy { from, to } => {
            let report = chatstore::copy::copy(&settings.database, &from, &to).await?;
            println!(
                "copied {} users ({} records); {} were already copied; every user verified",
                report.copied, report.records, report.unchanged
            );
            Ok(())
        }
    }
}
