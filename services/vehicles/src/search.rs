//! Inventory search: filters, sorts, keyset cursors and facet counts.
//!
//! Matching, exact facet counts, sorting and the keyset cursor are answered
//! by the in-memory [`Index`]: equality filters, words and the near-me box
//! are bitmap intersections; price and year ranges and the exact
//! great-circle distance are checked on the few candidates that remain. Only
//! the page's rows are then read from the database, by primary key.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use miliki_platform::db::Db;
use roaring::RoaringBitmap;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::{GeoPoint, Status, VehicleType};
use crate::index::{Index, Inner};
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

/// One match on its way to a page.
struct Candidate {
    id: Uuid,
    key: Key,
    distance: Option<f64>,
}

/// A page's ids, in order, before their rows are read.
struct Plan {
    page: Vec<Candidate>,
    next: Option<Position>,
    facets: Option<Facets>,
}

fn get_or_empty<'a, K: std::hash::Hash + Eq>(
    map: &'a std::collections::HashMap<K, RoaringBitmap>,
    key: &K,
    empty: &'a RoaringBitmap,
) -> &'a RoaringBitmap {
    map.get(key).unwrap_or(empty)
}

/// The slots matching every filter but the ranges and the exact distance.
fn candidates(ix: &Inner, f: &Filter) -> RoaringBitmap {
    let empty = RoaringBitmap::new();
    let mut set = match f.scope {
        Scope::All => ix.all.clone(),
        Scope::Customer { id, holds_any } => {
            let mut s = get_or_empty(&ix.by_status, &Status::Available, &empty).clone();
            if holds_any {
                s |= get_or_empty(&ix.by_holder, &id, &empty);
            }
            s
        }
    };
    if let Some(t) = f.vehicle_type {
        set &= get_or_empty(&ix.by_type, &t, &empty);
    }
    if let Some(s) = f.status {
        set &= get_or_empty(&ix.by_status, &s, &empty);
    }
    if let Some(m) = &f.make {
        set &= get_or_empty(&ix.by_make_key, m, &empty);
    }
    if let Some(m) = &f.model {
        set &= get_or_empty(&ix.by_model_key, m, &empty);
    }
    if let Some(b) = &f.branch {
        set &= get_or_empty(&ix.by_branch, b, &empty);
    }
    for term in &f.terms {
        if set.is_empty() {
            break;
        }
        set &= ix.prefix(term);
    }
    if let Some((point, radius)) = f.near {
        let (lat_lo, lat_hi, lon_lo, lon_hi) = point.bounding_box(radius);
        // East Africa is far from the antimeridian, so the box never wraps.
        set &= ix.in_box(lat_lo, lat_hi, lon_lo, lon_hi);
    }
    set
}

fn facet_counts(ix: &Inner, set: &RoaringBitmap) -> Facets {
    let mut facets = Facets {
        total: set.len() as i64,
        ..Facets::default()
    };
    // Few matches: count them one by one. Many: intersect with each value's bitmap.
    if set.len() <= 4096 {
        for slot in set {
            let e = ix.entry(slot);
            *facets
                .by_type
                .entry(e.vehicle_type.as_str().to_owned())
                .or_default() += 1;
            *facets.by_make.entry(e.make.clone()).or_default() += 1;
            *facets.by_branch.entry(e.branch.clone()).or_default() += 1;
        }
        return facets;
    }
    let count = |map: &std::collections::HashMap<String, RoaringBitmap>| {
        map.iter()
            .filter_map(|(k, b)| {
                let n = b.intersection_len(set);
                (n > 0).then(|| (k.clone(), n as i64))
            })
            .collect::<BTreeMap<_, _>>()
    };
    facets.by_type = ix
        .by_type
        .iter()
        .filter_map(|(k, b)| {
            let n = b.intersection_len(set);
            (n > 0).then(|| (k.as_str().to_owned(), n as i64))
        })
        .collect();
    facets.by_make = count(&ix.by_make);
    facets.by_branch = count(&ix.by_branch);
    facets
}

fn plan(ix: &Inner, f: &Filter) -> Plan {
    let mut set = candidates(ix, f);
    let ranged = f.year_min.is_some()
        || f.year_max.is_some()
        || f.price_min.is_some()
        || f.price_max.is_some()
        || f.near.is_some();
    let descending = matches!(f.sort, Sort::PriceDesc | Sort::YearDesc | Sort::Newest);
    let order = |a: &Key, a_id: &Uuid, b: &Key, b_id: &Uuid| {
        let o = a.cmp(b).then_with(|| a_id.cmp(b_id));
        if descending {
            o.reverse()
        } else {
            o
        }
    };
    let after = f.after.as_ref().map(|after| {
        let key = match (after.i, after.f) {
            (_, Some(x)) => Key::F(x),
            (Some(n), None) => Key::I(n),
            (None, None) => Key::I(0),
        };
        (key, after.id)
    });
    let mut matched = RoaringBitmap::new();
    let mut page: Vec<Candidate> = Vec::new();
    for slot in &set {
        let e = ix.entry(slot);
        if f.year_min.is_some_and(|y| e.year < y)
            || f.year_max.is_some_and(|y| e.year > y)
            || f.price_min.is_some_and(|p| e.price_minor < p)
            || f.price_max.is_some_and(|p| e.price_minor > p)
        {
            continue;
        }
        let distance = match f.near {
            Some((point, radius)) => {
                let d = point.distance_km(e.location);
                if d > radius {
                    continue;
                }
                Some(d)
            }
            None => None,
        };
        if ranged {
            matched.insert(slot);
        }
        let key = match f.sort {
            Sort::Distance => Key::F(distance.unwrap_or_default()),
            Sort::PriceAsc | Sort::PriceDesc => Key::I(e.price_minor),
            Sort::YearAsc | Sort::YearDesc => Key::I(e.year),
            Sort::Newest => Key::I(e.created_at),
        };
        if let Some((k, id)) = &after {
            if order(&key, &e.id, k, id) != Ordering::Greater {
                continue;
            }
        }
        page.push(Candidate {
            id: e.id,
            key,
            distance,
        });
    }
    if ranged {
        set = matched;
    }
    let facets = (f.facets && f.after.is_none()).then(|| facet_counts(ix, &set));
    let cmp = |a: &Candidate, b: &Candidate| order(&a.key, &a.id, &b.key, &b.id);
    let keep = f.limit as usize + 1;
    if page.len() > keep {
        page.select_nth_unstable_by(keep - 1, cmp);
        page.truncate(keep);
    }
    page.sort_unstable_by(cmp);
    let more = page.len() > f.limit as usize;
    page.truncate(f.limit as usize);
    let next = if more {
        page.last().map(|c| Position {
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
    Plan { page, next, facets }
}

/// Runs a search: the index picks and orders the page, the database supplies its rows.
pub async fn search(db: &Db, index: &Index, f: &Filter) -> Result<Results, sqlx::Error> {
    let Plan { page, next, facets } = index.read(|ix| plan(ix, f));
    let records = fetch_many(db, &page.iter().map(|c| c.id).collect::<Vec<_>>()).await?;
    let hits = page
        .iter()
        .filter_map(|c| {
            records.iter().find(|r| r.id == c.id).map(|record| Hit {
                record: record.clone(),
                distance_km: c.distance.map(|d| (d * 100.0).round() / 100.0),
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
