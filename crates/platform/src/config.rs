//! Settings: built-in defaults for embedded mode, then `miliki.toml` (or the
//! file named by `--config`), then `MILIKI_*` environment variables.
//!
//! Per-service settings are flat keys so they map one-to-one onto variables:
//! `MILIKI_USERS_DATABASE_URL` is `users_database_url`, `MILIKI_USERS_URL`
//! (where the gateway finds the users service) is `users_url`.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

use crate::crypto::{random_b64, KeyMaterial};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    Development,
    Production,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

/// Everything a Miliki process can be told.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub env: Environment,
    pub bind: IpAddr,
    pub port: u16,
    pub data_dir: PathBuf,
    pub log_format: LogFormat,
    /// ISO 3166 region used to read phone numbers typed without a country code.
    pub default_region: String,
    /// RabbitMQ; when absent, events travel over the in-process bus.
    pub amqp_url: Option<String>,
    pub amqp_exchange: String,
    /// Redis; when absent, rate limits are counted in this process.
    pub redis_url: Option<String>,
    pub redis_prefix: String,
    pub jwt_secret: Option<String>,
    pub jwt_issuer: String,
    pub jwt_audience: String,
    /// Data keys as `k1:BASE64,k2:BASE64`.
    pub encryption_keys: Option<String>,
    pub encryption_active_key: Option<String>,
    pub blind_index_key: Option<String>,
    /// Blind-index keys with ids for rotation, `b1:BASE64,b2:BASE64`; a lone
    /// `blind_index_key` is `b1`. The active one is `blind_index_active_key`,
    /// else the newest.
    pub blind_index_keys: Option<String>,
    pub blind_index_active_key: Option<String>,
    pub access_token_ttl_secs: i64,
    pub refresh_token_ttl_secs: i64,
    /// Login attempts allowed for one account from one client address in a
    /// window before it answers 429 (strict: only that pair is held back).
    pub login_max_failures: u64,
    /// Failed logins on one account, from anywhere, after which each further
    /// attempt is slowed down (never refused, so nobody can lock the owner out).
    pub login_account_slow_after: u64,
    /// Failed logins from one client address after which attempts are slowed
    /// down, and the ceiling past which it answers 429 (carrier NAT puts many
    /// honest customers behind one address, so it is high).
    pub login_ip_slow_after: u64,
    pub login_ip_max_failures: u64,
    pub login_window_secs: u64,
    /// Password hashes computed at once (0: one per core); a login that cannot
    /// get a turn within `hash_wait_ms` answers 503 with Retry-After.
    pub hash_concurrency: usize,
    pub hash_wait_ms: u64,
    /// Requests per minute per client address at the gateway; 0 turns the limit off.
    pub rate_limit_per_minute: u64,
    pub request_timeout_secs: u64,
    /// Open connections a listener holds in all, and per client address.
    pub max_connections: usize,
    pub max_connections_per_client: usize,
    /// A request's headers must arrive within this; idle keep-alive
    /// connections are closed after it too.
    pub header_read_timeout_ms: u64,
    /// How long shutdown waits for open requests and streams.
    pub shutdown_grace_secs: u64,
    /// Live event streams (SSE) one user, and one client address, may hold open.
    pub max_streams_per_user: usize,
    pub max_streams_per_client: usize,
    /// The operations listener's port (`/metrics`, health). Unset, a free port
    /// is picked and printed; set it wherever something scrapes metrics.
    pub ops_port: Option<u16>,
    /// Origins browsers may call the API from, comma-separated; empty allows none.
    pub cors_origins: String,
    /// Every call to Redis gives up after this and falls back to local state.
    pub redis_timeout_ms: u64,
    pub max_body_bytes: usize,
    pub max_upload_bytes: usize,
    /// How often a failed event delivery is retried before it is dead-lettered.
    pub event_max_attempts: u32,
    pub event_retry_base_ms: u64,
    /// Serve the in-process provider sandboxes (fake M-Pesa, MTN MoMo, SMS,
    /// push) under `/sandbox/...` on the public port. Unset: on, except in
    /// production, where only an explicit `true` mounts them.
    pub sandboxes: Option<bool>,
    /// Per-service keys (`<service>_database_url`, `<service>_url`).
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            env: Environment::Development,
            bind: IpAddr::from([127, 0, 0, 1]),
            port: 8080,
            data_dir: PathBuf::from("miliki-data"),
            log_format: LogFormat::Pretty,
            default_region: "KE".into(),
            amqp_url: None,
            amqp_exchange: "miliki.events".into(),
            redis_url: None,
            redis_prefix: "miliki".into(),
            jwt_secret: None,
            jwt_issuer: "miliki".into(),
            jwt_audience: "miliki-api".into(),
            encryption_keys: None,
            encryption_active_key: None,
            blind_index_key: None,
            blind_index_keys: None,
            blind_index_active_key: None,
            access_token_ttl_secs: 15 * 60,
            refresh_token_ttl_secs: 30 * 24 * 3600,
            login_max_failures: 5,
            login_account_slow_after: 20,
            login_ip_slow_after: 50,
            login_ip_max_failures: 1000,
            login_window_secs: 15 * 60,
            hash_concurrency: 0,
            hash_wait_ms: 3000,
            rate_limit_per_minute: 1200,
            request_timeout_secs: 30,
            max_connections: 10_000,
            max_connections_per_client: 256,
            header_read_timeout_ms: 10_000,
            shutdown_grace_secs: 10,
            max_streams_per_user: 4,
            max_streams_per_client: 32,
            ops_port: None,
            cors_origins: String::new(),
            redis_timeout_ms: 250,
            max_body_bytes: 1024 * 1024,
            max_upload_bytes: 5 * 1024 * 1024,
            event_max_attempts: 6,
            event_retry_base_ms: 500,
            sandboxes: None,
            extra: BTreeMap::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Invalid(String),
    #[error("production mode needs these settings, which have no production defaults: {0}")]
    MissingSecrets(String),
    #[error("secrets file {path}: {source}")]
    SecretsFile {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The secrets a process runs with, and where they came from.
#[derive(Clone)]
pub struct Secrets {
    pub jwt_secret: Vec<u8>,
    pub keys: KeyMaterial,
    /// The file they were read from (embedded mode), for key rotation.
    pub file: Option<PathBuf>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets")
            .field("file", &self.file)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize, Deserialize)]
struct SecretsFile {
    jwt_secret: String,
    #[serde(flatten)]
    keys: KeyMaterial,
}

impl Settings {
    /// Defaults, then the TOML file (if it exists), then `MILIKI_*` variables.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let file = file
            .map(Path::to_owned)
            .unwrap_or_else(|| PathBuf::from("miliki.toml"));
        Figment::from(Serialized::defaults(Settings::default()))
            .merge(Toml::file(file))
            .merge(Env::prefixed("MILIKI_"))
            .extract()
            .map_err(|e| ConfigError::Invalid(e.to_string()))
    }

    fn extra_str(&self, key: &str) -> Option<String> {
        match self.extra.get(key)? {
            serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
            serde_json::Value::Null => None,
            other => Some(other.to_string()),
        }
    }

    /// The database of `service`: `<service>_database_url`, else a SQLite file in the data dir.
    pub fn database_url(&self, service: &str) -> String {
        self.extra_str(&format!("{service}_database_url"))
            .unwrap_or_else(|| {
                format!(
                    "sqlite://{}",
                    self.data_dir.join(format!("{service}.db")).display()
                )
            })
    }

    /// Like [`Settings::database_url`], but production mode never falls back
    /// to a local SQLite file: an operator who forgot the URL must hear so.
    pub fn required_database_url(&self, service: &str) -> Result<String, ConfigError> {
        if self.is_production() && self.extra_str(&format!("{service}_database_url")).is_none() {
            return Err(ConfigError::Invalid(format!(
                "MILIKI_{}_DATABASE_URL is not set; production mode needs a database URL for the {service} service",
                service.to_uppercase()
            )));
        }
        Ok(self.database_url(service))
    }

    /// The configured CORS origins.
    pub fn cors_origin_list(&self) -> Vec<String> {
        self.cors_origins
            .split(',')
            .map(|o| o.trim().trim_end_matches('/').to_owned())
            .filter(|o| !o.is_empty())
            .collect()
    }

    /// How many password hashes may run at once.
    pub fn hash_slots(&self) -> usize {
        if self.hash_concurrency > 0 {
            self.hash_concurrency
        } else {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        }
    }

    /// How long the gateway skips a replica that failed
    /// (`upstream_cooldown_secs`, fractions allowed; default 10 s).
    pub fn upstream_cooldown(&self) -> Duration {
        self.extra_str("upstream_cooldown_secs")
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(Duration::from_secs_f64)
            .unwrap_or(Duration::from_secs(10))
    }

    /// Where traces are exported (`otlp_endpoint`, an OTLP/HTTP URL); none: not at all.
    pub fn otlp_endpoint(&self) -> Option<String> {
        self.extra_str("otlp_endpoint")
    }

    /// Where the gateway reaches `service` in distributed mode (one base URL
    /// or a comma-separated list of replicas).
    pub fn service_url(&self, service: &str) -> Option<String> {
        self.extra_str(&format!("{service}_url"))
    }

    pub fn is_production(&self) -> bool {
        self.env == Environment::Production
    }

    /// Whether this process serves the provider sandboxes (see [`Settings::sandboxes`]).
    pub fn sandboxes_enabled(&self) -> bool {
        self.sandboxes.unwrap_or(!self.is_production())
    }

    /// The JWT secret and data keys. Configured values win; in development
    /// anything missing is generated once into `<data_dir>/secrets.toml`
    /// (mode 0600); in production anything missing stops the process.
    pub fn secrets(&self) -> Result<Secrets, ConfigError> {
        let blind_configured = self.blind_index_key.is_some() || self.blind_index_keys.is_some();
        let configured = match (&self.jwt_secret, &self.encryption_keys) {
            (Some(jwt), Some(keys)) if blind_configured => Some((jwt, keys)),
            _ => None,
        };
        if let Some((jwt, keys)) = configured {
            if jwt.len() < 32 {
                return Err(ConfigError::Invalid(
                    "MILIKI_JWT_SECRET must be at least 32 characters".into(),
                ));
            }
            let keys = KeyMaterial::parse_key_list(keys)
                .map_err(|e| ConfigError::Invalid(format!("MILIKI_ENCRYPTION_KEYS: {e}")))?;
            let active_key = match &self.encryption_active_key {
                Some(active) => active.clone(),
                None => keys.keys().last().cloned().unwrap_or_default(),
            };
            let blind_index_keys = match &self.blind_index_keys {
                Some(list) => KeyMaterial::parse_key_list(list)
                    .map_err(|e| ConfigError::Invalid(format!("MILIKI_BLIND_INDEX_KEYS: {e}")))?,
                None => BTreeMap::new(),
            };
            let material = KeyMaterial {
                active_key,
                keys,
                blind_index_key: self.blind_index_key.clone().unwrap_or_default(),
                blind_index_keys,
                active_blind_key: self.blind_index_active_key.clone(),
            };
            crate::crypto::Keyring::from_material(&material).map_err(|e| {
                ConfigError::Invalid(format!(
                    "MILIKI_ENCRYPTION_KEYS / MILIKI_ENCRYPTION_ACTIVE_KEY / MILIKI_BLIND_INDEX_KEY(S) / MILIKI_BLIND_INDEX_ACTIVE_KEY: {e}"
                ))
            })?;
            return Ok(Secrets {
                jwt_secret: jwt.as_bytes().to_vec(),
                keys: material,
                file: None,
            });
        }
        if self.is_production() {
            let missing: Vec<&str> = [
                ("MILIKI_JWT_SECRET", self.jwt_secret.is_none()),
                ("MILIKI_ENCRYPTION_KEYS", self.encryption_keys.is_none()),
                ("MILIKI_BLIND_INDEX_KEY", !blind_configured),
            ]
            .into_iter()
            .filter_map(|(name, absent)| absent.then_some(name))
            .collect();
            return Err(ConfigError::MissingSecrets(missing.join(", ")));
        }
        let path = self.data_dir.join("secrets.toml");
        load_or_create_secrets(&path)
    }
}

fn load_or_create_secrets(path: &Path) -> Result<Secrets, ConfigError> {
    let io = |source| ConfigError::SecretsFile {
        path: path.to_owned(),
        source,
    };
    if !path.exists() {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let fresh = SecretsFile {
            jwt_secret: random_b64(48),
            keys: KeyMaterial::generate(),
        };
        write_secrets_file(path, &fresh.jwt_secret, &fresh.keys)?;
    }
    let text = std::fs::read_to_string(path).map_err(io)?;
    let parsed: SecretsFile = toml::from_str(&text)
        .map_err(|e| ConfigError::Invalid(format!("{}: {e}", path.display())))?;
    Ok(Secrets {
        jwt_secret: parsed.jwt_secret.into_bytes(),
        keys: parsed.keys,
        file: Some(path.to_owned()),
    })
}

/// Writes the embedded-mode secrets file, readable by its owner only. The
/// file is replaced atomically so a running server never reads half of it.
pub fn write_secrets_file(
    path: &Path,
    jwt_secret: &str,
    keys: &KeyMaterial,
) -> Result<(), ConfigError> {
    let io = |source| ConfigError::SecretsFile {
        path: path.to_owned(),
        source,
    };
    let body = toml::to_string(&SecretsFile {
        jwt_secret: jwt_secret.to_owned(),
        keys: keys.clone(),
    })
    .map_err(|e| ConfigError::Invalid(e.to_string()))?;
    let tmp = path.with_extension("toml.tmp");
    {
        use std::io::Write;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut f = options.open(&tmp).map_err(io)?;
        f.write_all(b"# Generated by miliki for embedded mode. Keep private; never commit.\n")
            .map_err(io)?;
        f.write_all(body.as_bytes()).map_err(io)?;
        f.sync_all().map_err(io)?;
    }
    std::fs::rename(&tmp, path).map_err(io)?;
    Ok(())
}

/// Reads the JWT secret back from an embedded-mode secrets file.
pub fn read_jwt_secret(path: &Path) -> Result<String, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::SecretsFile {
        path: path.to_owned(),
        source,
    })?;
    let parsed: SecretsFile =
        toml::from_str(&text).map_err(|e| ConfigError::Invalid(e.to_string()))?;
    Ok(parsed.jwt_secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn development_generates_secrets_once_with_private_mode() {
        let dir = tempfile::tempdir().unwrap();
        let settings = Settings {
            data_dir: dir.path().to_owned(),
            ..Settings::default()
        };
        let first = settings.secrets().unwrap();
        let second = settings.secrets().unwrap();
        assert_eq!(first.jwt_secret, second.jwt_secret);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("secrets.toml"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn production_refuses_to_start_without_secrets() {
        let settings = Settings {
            env: Environment::Production,
            jwt_secret: Some("x".repeat(40)),
            ..Settings::default()
        };
        let err = settings.secrets().unwrap_err().to_string();
        assert!(
            err.contains("MILIKI_ENCRYPTION_KEYS") && err.contains("MILIKI_BLIND_INDEX_KEY"),
            "{err}"
        );
        assert!(!err.contains("MILIKI_JWT_SECRET"));
    }

    #[test]
    fn per_service_keys_and_defaults() {
        let mut settings = Settings::default();
        assert_eq!(
            settings.database_url("users"),
            "sqlite://miliki-data/users.db"
        );
        settings
            .extra
            .insert("users_database_url".into(), "postgres://localhost/u".into());
        settings
            .extra
            .insert("users_url".into(), "http://127.0.0.1:9001".into());
        assert_eq!(settings.database_url("users"), "postgres://localhost/u");
        assert_eq!(
            settings.service_url("users").as_deref(),
            Some("http://127.0.0.1:9001")
        );
        assert_eq!(settings.service_url("vehicles"), None);
    }
}
