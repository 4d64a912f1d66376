//! One database handle for both backends. Services write portable SQL
//! (`$1` placeholders, `TEXT`/`BIGINT`/`BYTEA` columns, `ON CONFLICT`,
//! `RETURNING`) against sqlx's `Any` driver; the few places where SQLite and
//! PostgreSQL must differ ask [`Db::backend`].
//!
//! SQLite allows one writer at a time. Rather than let connections race for the
//! write lock (and fail with "database is locked"), embedded mode gives writes a
//! single-connection pool and reads a pool of their own; WAL lets them overlap.
//! On PostgreSQL both are the same pool.

use std::str::FromStr;
use std::sync::Once;
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{Any, AnyPool, Executor, Row, Transaction};
use uuid::Uuid;

use crate::clock::{from_micros, to_micros};

/// Which database engine is behind a [`Db`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A service's database.
#[derive(Debug, Clone)]
pub struct Db {
    reader: AnyPool,
    writer: AnyPool,
    backend: Backend,
}

pub type Tx = Transaction<'static, Any>;

/// How a service's database trades speed for durability.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DbOptions {
    /// Every commit survives an OS crash or power cut: SQLite runs
    /// `synchronous = FULL` (WAL's `NORMAL` can lose the last commits) and
    /// PostgreSQL `synchronous_commit = on`. For services that hold money.
    pub durable_commits: bool,
}

impl Db {
    /// Connects to `sqlite://PATH` (created if missing) or `postgres://…`.
    pub async fn connect(url: &str) -> Result<Self, sqlx::Error> {
        Self::connect_with(url, DbOptions::default()).await
    }

    /// [`Db::connect`] with explicit options.
    pub async fn connect_with(url: &str, opts: DbOptions) -> Result<Self, sqlx::Error> {
        static DRIVERS: Once = Once::new();
        DRIVERS.call_once(sqlx::any::install_default_drivers);

        if url.starts_with("sqlite:") {
            let url = if url.contains('?') {
                url.to_owned()
            } else {
                format!("{url}?mode=rwc")
            };
            let synchronous = if opts.durable_commits {
                "FULL"
            } else {
                "NORMAL"
            };
            let options = || {
                AnyPoolOptions::new()
                    .acquire_timeout(Duration::from_secs(10))
                    .after_connect(move |conn, _meta| {
                        Box::pin(async move {
                            // Reads map the file instead of copying pages through
                            // read(2), and sorts and groupings stay in memory: at
                            // 100k vehicles this halves search time.
                            let pragmas = format!(
                                "PRAGMA journal_mode = WAL; PRAGMA synchronous = {synchronous}; \
                                 PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000; \
                                 PRAGMA temp_store = MEMORY; PRAGMA mmap_size = 1073741824; \
                                 PRAGMA cache_size = -32768;"
                            );
                            conn.execute(pragmas.as_str()).await?;
                            Ok(())
                        })
                    })
            };
            let writer = options().max_connections(1).connect(&url).await?;
            let reader = options().max_connections(8).connect(&url).await?;
            Ok(Self {
                reader,
                writer,
                backend: Backend::Sqlite,
            })
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let pool = AnyPoolOptions::new()
                .max_connections(16)
                .acquire_timeout(Duration::from_secs(10))
                .after_connect(move |conn, _meta| {
                    Box::pin(async move {
                        if opts.durable_commits {
                            // The server default, pinned: a tuned-down server must not
                            // acknowledge a payment it could still lose.
                            conn.execute("SET synchronous_commit = on").await?;
                        }
                        Ok(())
                    })
                })
                .connect(url)
                .await?;
            Ok(Self {
                reader: pool.clone(),
                writer: pool,
                backend: Backend::Postgres,
            })
        } else {
            Err(sqlx::Error::Configuration(
                format!(
                    "unsupported database URL (want sqlite: or postgres:): {}",
                    redact(url)
                )
                .into(),
            ))
        }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The pool for reads outside a transaction.
    pub fn reader(&self) -> &AnyPool {
        &self.reader
    }

    /// The pool for writes outside a transaction.
    pub fn writer(&self) -> &AnyPool {
        &self.writer
    }

    /// Starts a write transaction.
    pub async fn begin(&self) -> Result<Tx, sqlx::Error> {
        self.writer.begin().await
    }

    /// `FOR UPDATE SKIP LOCKED` where the engine has it. SQLite has one writer,
    /// so there is nothing to skip.
    pub fn skip_locked(&self) -> &'static str {
        match self.backend {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        }
    }

    /// The value of SQLite's `synchronous` pragma (0 off, 1 normal, 2 full), for checks.
    pub async fn sqlite_synchronous(&self) -> Result<Option<i64>, sqlx::Error> {
        if self.backend != Backend::Sqlite {
            return Ok(None);
        }
        let level: i64 = sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(&self.writer)
            .await?;
        Ok(Some(level))
    }

    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT 1")
            .execute(&self.reader)
            .await
            .map(|_| ())
    }

    pub async fn close(&self) {
        self.writer.close().await;
        self.reader.close().await;
    }

    /// Applies the migrations of `set` not yet applied, each in its own transaction.
    pub async fn migrate(&self, set: &MigrationSet) -> Result<(), sqlx::Error> {
        let mut conn = self.writer.acquire().await?;
        if self.backend == Backend::Postgres {
            // Replicas starting together take turns.
            conn.execute("SELECT pg_advisory_lock(4242)").await?;
        }
        let result = async {
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (\
                 set_name TEXT NOT NULL, version BIGINT NOT NULL, name TEXT NOT NULL, \
                 applied_at BIGINT NOT NULL, PRIMARY KEY (set_name, version))",
            )
            .await?;
            for migration in set.migrations {
                let applied: Option<i64> = sqlx::query_scalar(
                    "SELECT version FROM schema_migrations WHERE set_name = $1 AND version = $2",
                )
                .bind(set.name)
                .bind(migration.version)
                .fetch_optional(&mut *conn)
                .await?;
                if applied.is_some() {
                    continue;
                }
                let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                sqlx::raw_sql(migration.sql).execute(&mut *tx).await?;
                sqlx::query(
                    "INSERT INTO schema_migrations (set_name, version, name, applied_at) \
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(set.name)
                .bind(migration.version)
                .bind(migration.name)
                .bind(to_micros(chrono::Utc::now()))
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                tracing::info!(
                    set = set.name,
                    version = migration.version,
                    name = migration.name,
                    "applied migration"
                );
            }
            Ok::<_, sqlx::Error>(())
        }
        .await;
        if self.backend == Backend::Postgres {
            conn.execute("SELECT pg_advisory_unlock(4242)").await?;
        }
        result
    }
}

/// One schema change, written in SQL both engines accept.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

/// The migrations of one owner (a service, or the events tables).
#[derive(Debug, Clone, Copy)]
pub struct MigrationSet {
    pub name: &'static str,
    pub migrations: &'static [Migration],
}

/// The engine behind an open connection or transaction (for code handed a
/// [`Tx`] rather than the [`Db`]).
pub fn backend_of(conn: &sqlx::AnyConnection) -> Backend {
    if conn.backend_name().eq_ignore_ascii_case("postgresql") {
        Backend::Postgres
    } else {
        Backend::Sqlite
    }
}

/// The `VALUES` list of a multi-row insert: `rows` tuples of `columns`
/// placeholders. SQLite gets plain `?`: it looks every numbered `$n` up in a
/// list when binding, which makes binding a long statement quadratic in its
/// parameters; PostgreSQL needs `$1`, `$2`, ….
pub fn values_list(backend: Backend, rows: usize, columns: usize) -> String {
    let mut sql = String::with_capacity(rows * columns * 6);
    let mut n = 0;
    for r in 0..rows {
        sql.push_str(if r == 0 { "(" } else { ", (" });
        for c in 0..columns {
            if c > 0 {
                sql.push_str(", ");
            }
            match backend {
                Backend::Sqlite => sql.push('?'),
                Backend::Postgres => {
                    n += 1;
                    sql.push('$');
                    sql.push_str(&n.to_string());
                }
            }
        }
        sql.push(')');
    }
    sql
}

/// True when a database error is a unique-constraint violation.
pub fn is_unique_violation(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Database(db) => {
            db.is_unique_violation()
                || db.code().as_deref() == Some("23505")
                || db.message().contains("UNIQUE constraint failed")
        }
        _ => false,
    }
}

/// A `SELECT` whose `WHERE` clause grows with the filters a request names.
/// Clauses are written with `?` for their one value; numbered placeholders
/// (`$1`, `$2`, …) are filled in as they are added.
#[derive(Debug)]
pub struct FilteredQuery {
    sql: String,
    args: Vec<String>,
}

impl FilteredQuery {
    /// Starts from `SELECT … FROM … WHERE 1 = 1`.
    pub fn new(select_from: &str) -> Self {
        Self {
            sql: format!("{select_from} WHERE 1 = 1"),
            args: Vec::new(),
        }
    }

    /// Adds ` AND <clause>` with its value bound to the clause's `?`.
    pub fn and(&mut self, clause: &str, value: impl Into<String>) -> &mut Self {
        self.args.push(value.into());
        let placeholder = format!("${}", self.args.len());
        self.sql.push_str(" AND ");
        self.sql.push_str(&clause.replace('?', &placeholder));
        self
    }

    /// Adds ` AND <column> IN (...)` over `values` (none: matches nothing).
    pub fn and_in(&mut self, column: &str, values: &[String]) -> &mut Self {
        if values.is_empty() {
            self.sql.push_str(" AND 1 = 0");
            return self;
        }
        let mut placeholders = Vec::with_capacity(values.len());
        for value in values {
            self.args.push(value.clone());
            placeholders.push(format!("${}", self.args.len()));
        }
        self.sql
            .push_str(&format!(" AND {column} IN ({})", placeholders.join(", ")));
        self
    }

    /// Appends SQL with no values, such as `ORDER BY` and `LIMIT`.
    pub fn push(&mut self, sql: &str) -> &mut Self {
        self.sql.push_str(sql);
        self
    }

    pub async fn fetch_all(&self, pool: &sqlx::AnyPool) -> Result<Vec<AnyRow>, sqlx::Error> {
        let mut query = sqlx::query(&self.sql);
        for arg in &self.args {
            query = query.bind(arg);
        }
        query.fetch_all(pool).await
    }
}

/// Escapes `%`, `_` and `\` for a `LIKE … ESCAPE '\'` pattern.
pub fn like_escape(fragment: &str) -> String {
    fragment
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

/// Typed reads of the portable column encodings (text ids, microsecond times).
pub trait RowExt {
    fn uuid(&self, column: &str) -> Result<Uuid, sqlx::Error>;
    fn opt_uuid(&self, column: &str) -> Result<Option<Uuid>, sqlx::Error>;
    fn time(&self, column: &str) -> Result<chrono::DateTime<chrono::Utc>, sqlx::Error>;
    fn opt_time(&self, column: &str) -> Result<Option<chrono::DateTime<chrono::Utc>>, sqlx::Error>;
    fn parsed<T: FromStr>(&self, column: &str) -> Result<T, sqlx::Error>
    where
        T::Err: std::fmt::Display;
}

impl RowExt for AnyRow {
    fn uuid(&self, column: &str) -> Result<Uuid, sqlx::Error> {
        crate::id::parse_stored(&self.try_get::<String, _>(column)?)
    }

    fn opt_uuid(&self, column: &str) -> Result<Option<Uuid>, sqlx::Error> {
        self.try_get::<Option<String>, _>(column)?
            .map(|s| crate::id::parse_stored(&s))
            .transpose()
    }

    fn time(&self, column: &str) -> Result<chrono::DateTime<chrono::Utc>, sqlx::Error> {
        Ok(from_micros(self.try_get::<i64, _>(column)?))
    }

    fn opt_time(&self, column: &str) -> Result<Option<chrono::DateTime<chrono::Utc>>, sqlx::Error> {
        Ok(self.try_get::<Option<i64>, _>(column)?.map(from_micros))
    }

    fn parsed<T: FromStr>(&self, column: &str) -> Result<T, sqlx::Error>
    where
        T::Err: std::fmt::Display,
    {
        let raw: String = self.try_get(column)?;
        raw.parse::<T>()
            .map_err(|e| sqlx::Error::Decode(format!("column {column}: {e}").into()))
    }
}

/// A URL with its password hidden, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact("amqp://guest:guest@127.0.0.1:5672/%2f"),
            "amqp://guest:***@127.0.0.1:5672/%2f"
        );
        assert_eq!(redact("sqlite://x.db"), "sqlite://x.db");
    }

    #[test]
    fn values_lists_number_postgres_placeholders_across_rows() {
        assert_eq!(values_list(Backend::Sqlite, 2, 2), "(?, ?), (?, ?)");
        assert_eq!(
            values_list(Backend::Postgres, 2, 3),
            "($1, $2, $3), ($4, $5, $6)"
        );
    }

    #[tokio::test]
    async fn sqlite_takes_numbered_placeholders_and_migrations() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::connect(&format!("sqlite://{}", dir.path().join("t.db").display()))
            .await
            .unwrap();
        static SET: MigrationSet = MigrationSet {
            name: "t",
            migrations: &[Migration {
                version: 1,
                name: "init",
                sql: "CREATE TABLE t (id TEXT PRIMARY KEY, n BIGINT NOT NULL, b BYTEA); CREATE INDEX t_n ON t (n);",
            }],
        };
        db.migrate(&SET).await.unwrap();
        db.migrate(&SET).await.unwrap();
        sqlx::query("INSERT INTO t (id, n, b) VALUES ($2, $1, $3)")
            .bind(7i64)
            .bind("a")
            .bind(vec![1u8, 2, 3])
            .execute(db.writer())
            .await
            .unwrap();
        let row = sqlx::query("SELECT id, n, b FROM t WHERE n = $1")
            .bind(7i64)
            .fetch_one(db.reader())
            .await
            .unwrap();
        assert_eq!(row.get::<String, _>("id"), "a");
        assert_eq!(row.get::<Vec<u8>, _>("b"), vec![1, 2, 3]);
        let err = sqlx::query("INSERT INTO t (id, n) VALUES ($1, $2)")
            .bind("a")
            .bind(1i64)
            .execute(db.writer())
            .await
            .unwrap_err();
        assert!(is_unique_violation(&err));
    }
}
