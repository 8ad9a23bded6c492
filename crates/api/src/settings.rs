//! Typed, layered configuration.
//!
//! Layers, later ones winning:
//! 1. `config/default.toml`,
//! 2. `config/{APP_ENV}.toml` (`development` when `APP_ENV` is unset; `test`, `production`),
//! 3. `APP__SECTION__KEY` environment variables (e.g. `APP__SERVER__PORT=9000`),
//! 4. the standard `DATABASE_URL` and `PORT` variables.
//!
//! The files are compiled into the binary, so it runs from any directory with no files at all;
//! `APP_CONFIG_DIR` points at a directory of replacement files for operators who prefer files.

use std::collections::HashMap;
use std::path::PathBuf;

use config::{Config, Environment as EnvSource, File, FileFormat};
use repositories::DatabaseSettings;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

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
    pub auth: AuthSettings,
    pub log: LogSettings,
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
    /// How long shutdown waits for in-flight requests before giving up.
    pub shutdown_timeout_secs: u64,
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
                .try_parsing(true)
                .source(Some(env.clone())),
        );
        if let Some(url) = env.get("DATABASE_URL").filter(|v| !v.is_empty()) {
            builder = builder.set_override("database.url", url.as_str())?;
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
        if self.server.body_limit_bytes == 0 {
            return Err(SettingsError::Invalid("server.body_limit_bytes must be positive".into()));
        }
        self.database.validate().map_err(SettingsError::Invalid)
    }
}

fn embedded(name: &str) -> &'static str {
    EMBEDDED_FILES.iter().find(|(n, _)| *n == name).map_or("", |(_, text)| text)
}
