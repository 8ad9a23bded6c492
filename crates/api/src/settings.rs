//! Typed, layered configuration.
//!
//! Layers, later ones winning:
//! 1. `config/default.toml`,
//! 2. `config/{APP_ENV}.toml` (`development` when `APP_ENV` is unset; `test`, `production`),
//! 3. `APP__SECTION__KEY` environment variables (e.g. `APP__SERVER__PORT=9000`),
//! 4. the standard `DATABASE_URL`, `PORT` and `OPENAI_API_KEY` variables.
//!
//! The files are compiled into the binary, so it runs from any directory with no files at all;
//! `APP_CONFIG_DIR` points at a directory of replacement files for operators who prefer files.

use std::collections::HashMap;
use std::path::PathBuf;

use config::{Config, Environment as EnvSource, File, FileFormat};
use repositories::DatabaseSettings;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

pub use chatkit_server::responder::{OpenAiSettings, ResponderKind, ResponderSettings};

/// The secret development tokens are signed with; production refuses to start with it.
pub const DEVELOPMENT_JWT_SECRET: &str = "chatstore-development-secret-not-for-production";

/// Shortest HS256 secret production accepts (RFC 7518 §3.2: at least the hash size).
const MIN_PRODUCTION_SECRET_BYTES: usize = 32;

const EMBEDDED_FILES: [(&str, &str); 4] = [
    ("default", include_str!("../../../config/default.toml")),
    ("development", include_str!("../../../config/development.toml")),
    ("test", include_str!("../../../config/test.toml")),
    ("production", include_str!("../../../config/production.toml")),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AppEnvironment {
    Development,
    Test,
    Production,
}

impl AppEnvironment {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Development => "development",
            Self::Test => "test",
            Self::Production => "production",
        }
    }
}

impl TryFrom<&str> for AppEnvironment {
    type Error = SettingsError;

    fn try_from(value: &str) -> Result<Self, Self::Error> {
        match value.to_ascii_lowercase().as_str() {
            "development" | "dev" => Ok(Self::Development),
            "test" => Ok(Self::Test),
            "production" | "prod" => Ok(Self::Production),
            other => Err(SettingsError::Invalid(format!(
                "APP_ENV={other:?} is not one of development, test, production"
            ))),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    /// Chosen by `APP_ENV`, never read from the files.
    #[serde(skip_deserializing, default = "default_environment")]
    pub environment: AppEnvironment,
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub idempotency: IdempotencySettings,
    pub attachments: AttachmentSettings,
    pub import: ImportSettings,
    pub retention: RetentionSettings,
    pub responder: ResponderSettings,
    pub auth: AuthSettings,
    pub log: LogSettings,
    pub search: SearchSettings,
}

fn default_environment() -> AppEnvironment {
    AppEnvironment::Development
}

#[derive(Debug, Clone, Deserialize)]
pub struct ServerSettings {
    pub host: String,
    /// `0` picks a free port (tests).
    pub port: u16,
    /// Largest JSON request body, in bytes.
    pub body_limit_bytes: usize,
    /// How long a streamed read waits for its client to take the next page.
    pub stalled_read_timeout_secs: u64,
    /// How long shutdown waits for in-flight requests before giving up.
    pub shutdown_timeout_secs: u64,
    /// How long a request's headers may take to arrive, from its first byte.
    pub header_read_timeout_secs: u64,
    /// How long a connection with no request in flight stays open.
    pub idle_timeout_secs: u64,
    /// Connections served at once; more are answered `503`.
    pub max_connections: usize,
    /// The URL clients reach the server at; `None`: `http://` and the request's Host.
    pub public_url: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct IdempotencySettings {
    /// How long an `Idempotency-Key` is remembered.
    pub key_ttl_secs: u64,
    /// How often expired keys are deleted.
    pub prune_interval_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AttachmentSettings {
    /// Largest upload, in bytes.
    pub max_bytes: usize,
    /// Lifetime of signed upload URLs.
    pub url_ttl_secs: u64,
    /// Lifetime of signed preview URLs.
    pub preview_url_ttl_secs: u64,
    /// Key for signed URLs; derived from the JWT secret when unset.
    pub url_signing_secret: Option<SecretString>,
}

impl AttachmentSettings {
    pub fn url_signing_secret(&self) -> Option<&str> {
        self.url_signing_secret.as_ref().map(ExposeSecret::expose_secret).filter(|s| !s.is_empty())
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct ImportSettings {
    /// Largest `POST /import` body, in bytes. The body is read line by line, never whole, so
    /// this bounds the import's size, not the server's memory.
    pub max_bytes: usize,
}

/// What the background sweeper deletes for good; both rules are off when unset.
#[derive(Debug, Clone, Deserialize)]
pub struct RetentionSettings {
    /// Conversations (chats with their items, ChatKit threads with theirs) not updated for
    /// this many days.
    pub idle_days: Option<u32>,
    /// Chats soft-deleted this many days ago (counted from the soft delete).
    pub inactive_days: Option<u32>,
    /// How often the sweeper runs.
    pub sweep_interval_secs: u64,
    /// Conversations deleted per statement: each statement's locks are short.
    pub batch_size: u64,
}

impl RetentionSettings {
    /// Whether any rule is on (else no sweeper runs).
    pub fn enabled(&self) -> bool {
        self.idle_days.is_some() || self.inactive_days.is_some()
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct AuthSettings {
    /// HS256 shared secret. Unset (or empty) disables HS256 tokens.
    pub jwt_secret: Option<SecretString>,
    /// A JWKS file whose RSA (RS256) and EC P-256 (ES256) public keys verify tokens.
    pub jwks_path: Option<PathBuf>,
    /// When set, tokens must carry this `iss`.
    pub issuer: Option<String>,
    /// When set, tokens must carry this `aud`.
    pub audience: Option<String>,
    /// Clock skew tolerated on `exp` and `nbf`.
    pub leeway_secs: u64,
    /// Lifetime of tokens made by `chatstore token`.
    pub token_ttl_secs: u64,
}

impl AuthSettings {
    pub fn secret(&self) -> Option<&str> {
        self.jwt_secret.as_ref().map(ExposeSecret::expose_secret).filter(|s| !s.is_empty())
    }

    pub fn jwks_path(&self) -> Option<&PathBuf> {
        self.jwks_path.as_ref().filter(|p| !p.as_os_str().is_empty())
    }

    pub fn issuer(&self) -> Option<&str> {
        self.issuer.as_deref().filter(|s| !s.is_empty())
    }

    pub fn audience(&self) -> Option<&str> {
        self.audience.as_deref().filter(|s| !s.is_empty())
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct SearchSettings {
    /// Whether writes are indexed for `GET /search`. The server writes it into the database at
    /// start: switching off empties the index, switching back on rebuilds it from every stored
    /// conversation. Off, `GET /search` answers `404`.
    pub enabled: bool,
    /// How often what was written is indexed while writes come in (session items, and
    /// ChatKit items on PostgreSQL, are indexed after their write, in batches; an idle server
    /// waits for its next write; a search first indexes its user's waiting items itself).
    pub index_interval_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LogSettings {
    /// A `tracing` filter (`info`, `chatstore=debug,sqlx=warn`, ...); `RUST_LOG` wins when set.
    pub level: String,
    /// `text` for people, `json` for log collectors.
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("configuration error: {0}")]
    Load(#[from] config::ConfigError),
    #[error("configuration error: {0}")]
    Invalid(String),
}

impl Settings {
    /// Loads the settings from the process environment.
    pub fn load() -> Result<Self, SettingsError> {
        Self::load_from_env(&std::env::vars().collect())
    }

    /// Loads the settings with `env` standing in for the process environment (for tests).
    pub fn load_from_env(env: &HashMap<String, String>) -> Result<Self, SettingsError> {
        let environment = match env.get("APP_ENV").filter(|v| !v.is_empty()) {
            Some(name) => AppEnvironment::try_from(name.as_str())?,
            None => AppEnvironment::Development,
        };
        let config_dir = env.get("APP_CONFIG_DIR").filter(|v| !v.is_empty()).map(PathBuf::from);

        let mut builder = Config::builder();
        for name in ["default", environment.as_str()] {
            builder = match &config_dir {
                Some(dir) => builder.add_source(
                    File::from(dir.join(format!("{name}.toml")))
                        .format(FileFormat::Toml)
                        .required(name == "default"),
                ),
                None => builder.add_source(File::from_str(embedded(name), FileFormat::Toml)),
            };
        }
        builder = builder.add_source(
            EnvSource::with_prefix("APP")
                .prefix_separator("__")
                .separator("__")
                .source(Some(env.clone())),
        );
        if let Some(url) = env.get("DATABASE_URL").filter(|v| !v.is_empty()) {
            builder = builder.set_override("database.url", url.as_str())?;
        }
        if let Some(key) = env.get("OPENAI_API_KEY").filter(|v| !v.is_empty())
            && !env.contains_key("APP__RESPONDER__OPENAI__API_KEY")
        {
            builder = builder.set_override("responder.openai.api_key", key.as_str())?;
        }
        if let Some(port) = env.get("PORT").filter(|v| !v.is_empty()) {
            let port: u16 = port.parse().map_err(|_| {
                SettingsError::Invalid(format!("PORT={port:?} is not a port number"))
            })?;
            builder = builder.set_override("server.port", port)?;
        }

        let mut settings: Self = builder.build()?.try_deserialize()?;
        settings.environment = environment;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), SettingsError> {
        let auth = &self.auth;
        if auth.secret().is_none() && auth.jwks_path().is_none() {
            return Err(SettingsError::Invalid(
                "no way to verify tokens: set auth.jwt_secret (APP__AUTH__JWT_SECRET) or \
                 auth.jwks_path (APP__AUTH__JWKS_PATH)"
                    .into(),
            ));
        }
        if self.environment == AppEnvironment::Production {
            if auth.secret() == Some(DEVELOPMENT_JWT_SECRET) {
                return Err(SettingsError::Invalid(
                    "refusing to start in production with the development JWT secret: set \
                     APP__AUTH__JWT_SECRET to a secret of your own, or APP__AUTH__JWT_SECRET= \
                     (empty) with APP__AUTH__JWKS_PATH"
                        .into(),
                ));
            }
            if auth.secret().is_some_and(|s| s.len() < MIN_PRODUCTION_SECRET_BYTES) {
                return Err(SettingsError::Invalid(format!(
                    "auth.jwt_secret must be at least {MIN_PRODUCTION_SECRET_BYTES} bytes in \
                     production"
                )));
            }
        }
        if self.idempotency.prune_interval_secs == 0 {
            return Err(SettingsError::Invalid(
                "idempotency.prune_interval_secs must be positive".into(),
            ));
        }
        if self.import.max_bytes == 0 {
            return Err(SettingsError::Invalid("import.max_bytes must be positive".into()));
        }
        let retention = &self.retention;
        if retention.sweep_interval_secs == 0 || retention.batch_size == 0 {
            return Err(SettingsError::Invalid(
                "retention.sweep_interval_secs and retention.batch_size must be positive".into(),
            ));
        }
        if retention.idle_days == Some(0) || retention.inactive_days == Some(0) {
            return Err(SettingsError::Invalid(
                "retention.idle_days and retention.inactive_days must be at least 1 (leave them \
                 unset to keep everything)"
                    .into(),
            ));
        }
        if self.server.body_limit_bytes == 0 {
            return Err(SettingsError::Invalid("server.body_limit_bytes must be positive".into()));
        }
        let server = &self.server;
        if server.header_read_timeout_secs == 0
            || server.idle_timeout_secs == 0
            || server.max_connections == 0
        {
            return Err(SettingsError::Invalid(
                "server.header_read_timeout_secs, server.idle_timeout_secs and \
                 server.max_connections must be positive"
                    .into(),
            ));
        }
        self.responder.validate().map_err(SettingsError::Invalid)?;
        self.database.validate().map_err(SettingsError::Invalid)
    }
}

fn embedded(name: &str) -> &'static str {
    EMBEDDED_FILES.iter().find(|(n, _)| *n == name).map_or("", |(_, text)| text)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn no_configuration_at_all_means_development_on_embedded_sqlite() {
        let settings = Settings::load_from_env(&env(&[])).unwrap();
        assert_eq!(settings.environment, AppEnvironment::Development);
        assert_eq!(settings.database.url.expose_secret(), "sqlite://chatstore.db?mode=rwc");
        assert!(settings.database.migrate_on_start);
        assert_eq!((settings.server.host.as_str(), settings.server.port), ("127.0.0.1", 8080));
        assert_eq!(settings.auth.secret(), Some(DEVELOPMENT_JWT_SECRET));
        // development.toml is layered over default.toml.
        assert!(settings.log.level.contains("chatstore=debug"));
    }

    #[test]
    fn the_environment_file_overrides_the_defaults() {
        let settings = Settings::load_from_env(&env(&[("APP_ENV", "test")])).unwrap();
        assert_eq!(settings.environment, AppEnvironment::Test);
        assert_eq!(settings.server.port, 0);
        assert_eq!(settings.database.max_connections, 8);
        // Keys test.toml does not mention keep their defaults.
        assert_eq!(settings.server.host, "127.0.0.1");
    }

    #[test]
    fn environment_variables_override_the_files_and_are_typed() {
        let settings = Settings::load_from_env(&env(&[
            ("APP_ENV", "test"),
            ("APP__SERVER__PORT", "9123"),
            ("APP__SERVER__BODY_LIMIT_BYTES", "1000"),
            ("APP__DATABASE__MIGRATE_ON_START", "false"),
            ("APP__DATABASE__MAX_CONNECTIONS", "3"),
            ("APP__AUTH__ISSUER", "https://issuer.example/"),
            ("APP__LOG__FORMAT", "json"),
        ]))
        .unwrap();
        assert_eq!(settings.server.port, 9123);
        assert_eq!(settings.server.body_limit_bytes, 1000);
        assert!(!settings.database.migrate_on_start);
        assert_eq!(settings.database.max_connections, 3);
        assert_eq!(settings.auth.issuer(), Some("https://issuer.example/"));
        assert_eq!(settings.log.format, LogFormat::Json);
    }

    #[test]
    fn database_url_and_port_win_over_everything() {
        let settings = Settings::load_from_env(&env(&[
            ("APP__SERVER__PORT", "9123"),
            ("APP__DATABASE__URL", "sqlite://other.db?mode=rwc"),
            ("DATABASE_URL", "postgres://u:p@db.example/chat?sslmode=require"),
            ("PORT", "7000"),
        ]))
        .unwrap();
        assert_eq!(settings.server.port, 7000);
        assert_eq!(
            settings.database.url.expose_secret(),
            "postgres://u:p@db.example/chat?sslmode=require"
        );
    }

    #[test]
    fn bad_values_are_refused_with_a_message_naming_them() {
        let bad = [
            (vec![("APP_ENV", "staging")], "staging"),
            (vec![("PORT", "eighty")], "PORT"),
            (vec![("APP__SERVER__PORT", "99999")], "port"),
            (vec![("DATABASE_URL", "mysql://localhost/x")], "postgres://"),
            (vec![("APP__LOG__FORMAT", "yaml")], "yaml"),
            (vec![("APP__AUTH__JWT_SECRET", "")], "no way to verify tokens"),
        ];
        for (pairs, needle) in bad {
            let error = Settings::load_from_env(&env(&pairs)).unwrap_err().to_string();
            assert!(error.contains(needle), "{pairs:?}: {error}");
        }
    }

    #[test]
    fn production_refuses_the_development_secret_and_short_secrets() {
        let error = Settings::load_from_env(&env(&[("APP_ENV", "production")])).unwrap_err();
        assert!(error.to_string().contains("development JWT secret"), "{error}");
        let error = Settings::load_from_env(&env(&[
            ("APP_ENV", "production"),
            ("APP__AUTH__JWT_SECRET", "short"),
        ]))
        .unwrap_err();
        assert!(error.to_string().contains("at least 32 bytes"), "{error}");

        let secret = "a-production-secret-of-forty-two-bytes-ok!";
        let settings = Settings::load_from_env(&env(&[
            ("APP_ENV", "production"),
            ("APP__AUTH__JWT_SECRET", secret),
            ("DATABASE_URL", "postgres://app:pw@db/chat"),
        ]))
        .unwrap();
        assert_eq!(settings.environment, AppEnvironment::Production);
        assert_eq!(settings.server.host, "0.0.0.0");
        assert!(!settings.database.migrate_on_start);
        assert_eq!(settings.log.format, LogFormat::Json);
        // JWKS-only production: the secret can be switched off.
        let settings = Settings::load_from_env(&env(&[
            ("APP_ENV", "production"),
            ("APP__AUTH__JWT_SECRET", ""),
            ("APP__AUTH__JWKS_PATH", "/etc/chatstore/jwks.json"),
        ]))
        .unwrap();
        assert_eq!(settings.auth.secret(), None);
    }

    #[test]
    fn numeric_looking_secrets_are_kept_as_written() {
        let settings = Settings::load_from_env(&env(&[
            ("APP__AUTH__JWT_SECRET", "1e5"),
            ("APP__AUTH__AUDIENCE", "007"),
        ]))
        .unwrap();
        assert_eq!(settings.auth.secret(), Some("1e5"));
        assert_eq!(settings.auth.audience(), Some("007"));
    }

    #[test]
    fn the_openai_responder_takes_its_key_from_openai_api_key_and_needs_one_for_openai() {
        let openai = [("APP__RESPONDER__KIND", "openai")];
        let refused = Settings::load_from_env(&env(&openai)).unwrap_err().to_string();
        assert!(refused.contains("OPENAI_API_KEY"), "{refused}");

        let settings =
            Settings::load_from_env(&env(&[openai[0], ("OPENAI_API_KEY", "sk-from-env")])).unwrap();
        let key = settings.responder.openai.api_key.as_ref().map(ExposeSecret::expose_secret);
        assert_eq!(key, Some("sk-from-env"));
        assert_eq!(settings.responder.kind, ResponderKind::Openai);
        let settings = Settings::load_from_env(&env(&[
            openai[0],
            ("OPENAI_API_KEY", "sk-from-env"),
            ("APP__RESPONDER__OPENAI__API_KEY", "sk-configured"),
        ]))
        .unwrap();
        let key = settings.responder.openai.api_key.as_ref().map(ExposeSecret::expose_secret);
        assert_eq!(key, Some("sk-configured"), "the app's own variable wins");
        assert!(!format!("{settings:?}").contains("sk-configured"));

        // A self-hosted endpoint may need no key; a URL that is not one is refused.
        let local = Settings::load_from_env(&env(&[
            openai[0],
            ("APP__RESPONDER__OPENAI__BASE_URL", "http://127.0.0.1:11434/v1"),
        ]));
        assert!(local.is_ok());
        let refused = Settings::load_from_env(&env(&[
            openai[0],
            ("APP__RESPONDER__OPENAI__BASE_URL", "localhost:11434"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(refused.contains("base_url"), "{refused}");
        // The echo default needs nothing.
        assert!(Settings::load_from_env(&env(&[])).is_ok());
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let settings = Settings::load_from_env(&env(&[
            ("APP__AUTH__JWT_SECRET", "super-secret-value-1234567890abcdef"),
            ("DATABASE_URL", "postgres://app:db-password-xyz@db/chat"),
        ]))
        .unwrap();
        let shown = format!("{settings:?}");
        assert!(!shown.contains("super-secret-value"), "{shown}");
        assert!(!shown.contains("db-password-xyz"), "{shown}");
    }

    #[test]
    fn a_config_directory_replaces_the_embedded_files() {
        let dir = std::env::temp_dir().join(format!("chatstore-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let default = embedded("default").replace("port = 8080", "port = 8181");
        std::fs::write(dir.join("default.toml"), default).unwrap();
        std::fs::write(dir.join("test.toml"), "[server]\nhost = \"127.0.0.2\"\n").unwrap();
        let dir_text = dir.to_string_lossy().into_owned();
        let settings =
            Settings::load_from_env(&env(&[("APP_CONFIG_DIR", &dir_text), ("APP_ENV", "test")]))
                .unwrap();
        assert_eq!((settings.server.host.as_str(), settings.server.port), ("127.0.0.2", 8181));
        // A directory without default.toml is an error, not a silent fallback.
        std::fs::remove_file(dir.join("default.toml")).unwrap();
        assert!(Settings::load_from_env(&env(&[("APP_CONFIG_DIR", &dir_text)])).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
