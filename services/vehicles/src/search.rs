//! Inventory search: filters, sorts, keyset cursors and facet counts.
//!
//! Everything but distance is done by the database through its indexes. A
//! near-me search asks the database only for the rows inside a latitude /
//! longitude box around the point (an indexed range), then computes exact
//! great-circle distances here, where both engines agree on the arithmetic.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use miliki_platform::db::Db;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use uuid::Uuid;

use crate::domain::{GeoPoint, Status, VehicleType};
use crate::store::{VehicleRecord, COLUMNS};

miliki_platform::string_enum!(
    /// How results are ordered.
    Sort {
        Newest => "newest",
        PriceAsc => "price_asc",
        PriceDesc => "price_desc",
        YearDesc => "year_desc",
        YearAsc => "year_asc",
        Distance => "distance",
    }
);

/// Whose eyes the results are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Staff see every vehicle.
    All,
    /// Customers see available vehicles, and those they hold themselves.
    Customer { id: Uuid, holds_any: bool },
}

/// Where the previous page ended: the sort it was for, the last sort key and id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Position {
    pub s: Sort,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub i: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub f: Option<f64>,
    pub id: Uuid,
}

/// A parsed, validated search.
#[derive(Debug, Clone)]
pub struct Filter {
    pub scope: Scope,
    pub vehicle_type: Option<VehicleType>,
    /// Lower-cased.
    pub make: Option<String>,
    /// Lower-cased.
    pub model: Option<String>,
    pub year_min: Option<i64>,
    pub year_max: Option<i64>,
    pub price_min: Option<i64>,
    pub price_max: Option<i64>,
    pub branch: Option<String>,
    pub status: Option<Status>,
    pub near: Option<(GeoPoint, f64)>,
    pub terms: Vec<String>,
    pub sort: Sort,
    pub after: Option<Position>,
    pub limit: u32,
    pub facets: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Facets {
    /// Vehicles matching the filters.
    pub total: i64,
    #[serde(rename = "type")]
    pub by_type: BTreeMap<String, i64>,
    #[serde(rename = "make")]
    pub by_make: BTreeMap<String, i64>,
    #[serde(rename = "branch")]
    pub by_branch: BTreeMap<String, i64>,
}

pub struct Hit {
    pub record: VehicleRecord,
    pub distance_km: Option<f64>,
}

pub struct Results {
    pub hits: Vec<Hit>,
    pub next: Option<Position>,
    pub facets: Option<Facets>,
}

enum Param {
    Text(String),
    Int(i64),
    Float(f64),
}

/// A WHERE clause and its parameters, numbered as they are added.
#[derive(Default)]
struct Sql {
    clauses: Vec<String>,
    params: Vec<Param>,
}

impl Sql {
    fn p(&mut self, param: Param) -> String {
        self.params.push(param);
        format!("${}", self.params.len())
    }

    fn clause(&mut self, c: String) {
        self.clauses.push(c);
    }

    fn where_sql(&self) -> String {
        if self.clauses.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", self.clauses.join(" AND "))
        }
    }

    fn bind<'q>(
        &'q self,
        mut q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    ) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
        for p in &self.params {
            q = match p {
                Param::Text(s) => q.bind(s.as_str()),
                Param::Int(n) => q.bind(*n),
                Param::Float(f) => q.bind(*f),
            };
        }
        q
    }
}

/// The exclusive upper bound of the words starting with `prefix`, when one
/// exists among lower-case ASCII letters and digits (`toy` → `toz`, `a9` → `aa`).
fn prefix_upper_bound(prefix: &str) -> Option<String> {
    if !prefix.is_ascii() {
        return None;
    }
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = match last {
            '9' => Some('a'),
            'z' => None,
            c => char::from_u32(c as u32 + 1),
        };
        if let Some(n) = next {
            chars.push(n);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

fn base_where(f: &Filter) -> Sql {
    let mut sql = Sql::default();
    match f.scope {
        Scope::All => {}
        Scope::Customer {
            holds_any: false, ..
        } => sql.clause("status = 'available'".into()),
        Scope::Customer {
            id,
            holds_any: true,
        } => {
            let p = sql.p(Param::Text(id.to_string()));
            sql.clause(format!("(status = 'available' OR held_by = {p})"));
        }
    }
    if let Some(t) = f.vehicle_type {
        let p = sql.p(Param::Text(t.as_str().into()));
        sql.clause(format!("vehicle_type = {p}"));
    }
    if let Some(m) = &f.make {
        let p = sql.p(Param::Text(m.clone()));
        sql.clause(format!("make_key = {p}"));
    }
    if let Some(m) = &f.model {
        let p = sql.p(Param::Text(m.clone()));
        sql.clause(format!("model_key = {p}"));
    }
    if let Some(y) = f.year_min {
        let p = sql.p(Param::Int(y));
        sql.clause(format!("year >= {p}"));
    }
    if let Some(y) = f.year_max {
        let p = sql.p(Param::Int(y));
        sql.clause(format!("year <= {p}"));
    }
    if let Some(n) = f.price_min {
        let p = sql.p(Param::Int(n));
        sql.clause(format!("price_minor >= {p}"));
    }
    if let Some(n) = f.price_max {
        let p = sql.p(Param::Int(n));
        sql.clause(format!("price_minor <= {p}"));
    }
    if let Some(b) = &f.branch {
        let p = sql.p(Param::Text(b.clone()));
        sql.clause(format!("branch = {p}"));
    }
    if let Some(s) = f.status {
        let p = sql.p(Param::Text(s.as_str().into()));
        sql.clause(format!("status = {p}"));
    }
    for term in &f.terms {
        // Word-prefix match through the term index: a range scan on both engines.
        let lo = sql.p(Param::Text(term.clone()));
        let c = match prefix_upper_bound(term) {
            Some(hi) => {
                let hi = sql.p(Param::Text(hi));
                format!(
                    "id IN (SELECT vehicle_id FROM vehicle_terms WHERE term >= {lo} AND term < {hi})"
                )
            }
            None => format!("id IN (SELECT vehicle_id FROM vehicle_terms WHERE term = {lo})"),
        };
        sql.clause(c);
    }
    if let Some((point, radius)) = f.near {
        let (lat_lo, lat_hi, lon_lo, lon_hi) = point.bounding_box(radius);
        let a = sql.p(Param::Float(lat_lo));
        let b = sql.p(Param::Float(lat_hi));
        let c = sql.p(Param::Float(lon_lo));
        let d = sql.p(Param::Float(lon_hi));
        // East Africa is far from the antimeridian, so the box never wraps.
        sql.clause(format!(
            "latitude BETWEEN {a} AND {b} AND longitude BETWEEN {c} AND {d}"
        ));
    }
    sql
}

/// Runs a search.
pub async fn search(db: &Db, f: &Filter) -> Result<Results, sqlx::Error> {
    if f.near.is_some() {
        return search_near(db, f).await;
    }
    let mut sql = base_where(f);
    let facets = if f.facets && f.after.is_none() {
        Some(facet_counts(db, &sql).await?)
    } else {
        None
    };
    let (column, descending) = match f.sort {
        Sort::PriceAsc => ("price_minor", false),
        Sort::PriceDesc => ("price_minor", true),
        Sort::YearAsc => ("year", false),
        Sort::YearDesc => ("year", true),
        Sort::Newest | Sort::Distance => ("created_at", true),
    };
    if let Some(after) = &f.after {
        let k = sql.p(Param::Int(after.i.unwrap_or_default()));
        let k2 = sql.p(Param::Int(after.i.unwrap_or_default()));
        let id = sql.p(Param::Text(after.id.to_string()));
        let op = if descending { "<" } else { ">" };
        sql.clause(format!(
            "({column} {op} {k} OR ({column} = {k2} AND id {op} {id}))"
        ));
    }
    let dir = if descending { "DESC" } else { "ASC" };
    let limit = sql.p(Param::Int(i64::from(f.limit) + 1));
    // Two steps: ids and sort keys first, which the indexes alone can answer,
    // then the full rows of just this page.
    let text = format!(
        "SELECT id, price_minor, year, created_at FROM vehicles{} \
         ORDER BY {column} {dir}, id {dir} LIMIT {limit}",
        sql.where_sql()
    );
    let rows = sql.bind(sqlx::query(&text)).fetch_all(db.reader()).await?;
    let mut keys = Vec::with_capacity(rows.len());
    for r in &rows {
        let id: String = r.try_get("id")?;
        let key: i64 = match column {
            "price_minor" => r.try_get("price_minor")?,
            "year" => r.try_get("year")?,
            _ => r.try_get("created_at")?,
        };
        keys.push((miliki_platform::id::parse_stored(&id)?, key));
    }
    let more = keys.len() > f.limit as usize;
    keys.truncate(f.limit as usize);
    let next = if more {
        keys.last().map(|(id, key)| Position {
            s: f.sort,
            i: Some(*key),
            f: None,
            id: *id,
        })
    } else {
        None
    };
    let records = fetch_many(db, &keys.iter().map(|(id, _)| *id).collect::<Vec<_>>()).await?;
    let hits = keys
        .iter()
        .filter_map(|(id, _)| {
            records.iter().find(|r| r.id == *id).map(|record| Hit {
                record: record.clone(),
                distance_km: None,
            })
        })
        .collect();
    Ok(Results { hits, next, facets })
}

async fn facet_counts(db: &Db, sql: &Sql) -> Result<Facets, sqlx::Error> {
    // One pass over the matching rows for all three facets.
    let text = format!(
        "SELECT vehicle_type, make, branch, COUNT(*) AS n FROM vehicles{} \
         GROUP BY vehicle_type, make, branch",
        sql.where_sql()
    );
    let rows = sql.bind(sqlx::query(&text)).fetch_all(db.reader()).await?;
    let mut facets = Facets::default();
    for r in rows {
        let n: i64 = r.try_get("n")?;
        *facets
            .by_type
            .entry(r.try_get("vehicle_type")?)
            .or_default() += n;
        *facets.by_make.entry(r.try_get("make")?).or_default() += n;
        *facets.by_branch.entry(r.try_get("branch")?).or_default() += n;
        facets.total += n;
    }
    Ok(facets)
}

/// A candidate of a near-me search: just what sorting and facets need.
struct Candidate {
    id: Uuid,
    distance: f64,
    key: Key,
    vehicle_type: String,
    make: String,
    branch: String,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Key {
    I(i64),
    F(f64),
}

impl Key {
    fn cmp(&self, other: &Key) -> Ordering {
        match (self, other) {
            (Key::I(a), Key::I(b)) => a.cmp(b),
            (Key::F(a), Key::F(b)) => a.total_cmp(b),
            (Key::I(a), Key::F(b)) => (*a as f64).total_cmp(b),
            (Key::F(a), Key::I(b)) => a.total_cmp(&(*b as f64)),
        }
    }
}

async fn search_near(db: &Db, f: &Filter) -> Result<Results, sqlx::Error> {
    let Some((point, radius)) = f.near else {
        return Ok(Results {
            hits: Vec::new(),
            next: None,
            facets: None,
        });
    };
    let sql = base_where(f);
    let text = format!(
        "SELECT id, latitude, longitude, price_minor, year, created_at, vehicle_type, make, branch \
         FROM vehicles{}",
        sql.where_sql()
    );
    let rows = sql.bind(sqlx::query(&text)).fetch_all(db.reader()).await?;
    let descending = matches!(f.sort, Sort::PriceDesc | Sort::YearDesc | Sort::Newest);
    let mut candidates = Vec::with_capacity(rows.len());
    for r in &rows {
        let here = GeoPoint {
            latitude: r.try_get("latitude")?,
            longitude: r.try_get("longitude")?,
        };
        let distance = point.distance_km(here);
        if distance > radius {
            continue;
        }
        let key = match f.sort {
            Sort::Distance => Key::F(distance),
            Sort::PriceAsc | Sort::PriceDesc => Key::I(r.try_get("price_minor")?),
            Sort::YearAsc | Sort::YearDesc => Key::I(r.try_get("year")?),
            Sort::Newest => Key::I(r.try_get("created_at")?),
        };
        let id: String = r.try_get("id")?;
        candidates.push(Candidate {
            id: miliki_platform::id::parse_stored(&id)?,
            distance,
            key,
            vehicle_type: r.try_get("vehicle_type")?,
            make: r.try_get("make")?,
            branch: r.try_get("branch")?,
        });
    }
    let facets = (f.facets && f.after.is_none()).then(|| {
        let mut facets = Facets {
            total: candidates.len() as i64,
            ..Facets::default()
        };
        for c in &candidates {
            *facets.by_type.entry(c.vehicle_type.clone()).or_default() += 1;
            *facets.by_make.entry(c.make.clone()).or_default() += 1;
            *facets.by_branch.entry(c.branch.clone()).or_default() += 1;
        }
        facets
    });
    let order = |a: &Key, a_id: &Uuid, b: &Key, b_id: &Uuid| {
        let o = a.cmp(b).then_with(|| a_id.cmp(b_id));
        if descending {
            o.reverse()
        } else {
            o
        }
    };
    if let Some(after) = &f.after {
        let after_key = match (after.i, after.f) {
            (_, Some(x)) => Key::F(x),
            (Some(n), None) => Key::I(n),
            (None, None) => Key::I(0),
        };
        candidates.retain(|c| order(&c.key, &c.id, &after_key, &after.id) == Ordering::Greater);
    }
    candidates.sort_by(|a, b| order(&a.key, &a.id, &b.key, &b.id));
    let more = candidates.len() > f.limit as usize;
    candidates.truncate(f.limit as usize);
    let next = if more {
        candidates.last().map(|c| Position {
            s: f.sort,
            i: match c.key {
                Key::I(n) => Some(n),
                Key::F(_) => None,
            },
            f: match c.key {
                Key::F(x) => Some(x),
                Key::I(_) => None,
            },
            id: c.id,
        })
    } else {
        None
    };
    let records = fetch_many(db, &candidates.iter().map(|c| c.id).collect::<Vec<_>>()).await?;
    let hits = candidates
        .iter()
        .filter_map(|c| {
            records.iter().find(|r| r.id == c.id).map(|record| Hit {
                record: record.clone(),
                distance_km: Some((c.distance * 100.0).round() / 100.0),
            })
        })
        .collect();
    Ok(Results { hits, next, facets })
}

async fn fetch_many(db: &Db, ids: &[Uuid]) -> Result<Vec<VehicleRecord>, sqlx::Error> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let placeholders: Vec<String> = (1..=ids.len()).map(|i| format!("${i}")).collect();
    let text = format!(
        "SELECT {COLUMNS} FROM vehicles WHERE id IN ({})",
        placeholders.join(", ")
    );
    let mut q = sqlx::query(&text);
    for id in ids {
        q = q.bind(id.to_string());
    }
    q.fetch_all(db.reader())
        .await?
        .iter()
        .map(VehicleRecord::from_row)
        .collect()
}

/// Whether `customer` holds any vehicle (reserved for them, under their contract, theirs).
pub async fn holds_any(db: &Db, customer: Uuid) -> Result<bool, sqlx::Error> {
    let n: Option<String> = sqlx::query_scalar(
        "SELECT id FROM vehicles WHERE held_by = $1 AND held_by IS NOT NULL LIMIT 1",
    )
    .bind(customer.to_string())
    .fetch_optional(db.reader())
    .await?;
    Ok(n.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_bounds() {
        assert_eq!(prefix_upper_bound("toy").as_deref(), Some("toz"));
        assert_eq!(prefix_upper_bound("a9").as_deref(), Some("aa"));
        assert_eq!(prefix_upper_bound("az").as_deref(), Some("b"));
        assert_eq!(prefix_upper_bound("zz"), None);
        assert_eq!(prefix_upper_bound("é"), None);
    }
}
