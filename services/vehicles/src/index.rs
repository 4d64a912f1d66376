//! The in-memory search index: the searchable projection of every vehicle,
//! with a bitmap per facet value, a word index for text and a grid of cells
//! for near-me, so a search with exact facet counts is a few bitmap
//! intersections instead of an aggregate over tens of thousands of rows.
//!
//! It is rebuilt from the database at start ([`Index::load`]) and kept
//! current two ways (see [`crate::state::AppState::committed`] and
//! [`crate::feed::Feed::run`]):
//! - a write in this process refreshes the vehicles it touched right after
//!   its commit, before the response, so the writer reads its own write;
//! - every process tails the change log (`vehicle_changes`, positions in
//!   commit order) and refreshes what other replicas changed.
//!
//! Refreshes are guarded by the row's version, so a slow refresh never
//! overwrites a newer one.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use miliki_platform::db::{Db, RowExt};
use roaring::RoaringBitmap;
use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};
use uuid::Uuid;

use crate::domain::{self, GeoPoint, Status, VehicleType};

/// Grid cell size in degrees (about 11 km of latitude): a near-me search of
/// a few km touches a handful of cells.
const CELL_DEGREES: f64 = 0.1;

const PROJECTION: &str = "id, vehicle_type, make, make_key, model, model_key, description, \
    year, price_minor, branch, status, held_by, latitude, longitude, created_at, version";

/// What search needs of one vehicle.
#[derive(Debug, Clone)]
pub struct Entry {
    pub id: Uuid,
    pub vehicle_type: VehicleType,
    pub make: String,
    pub make_key: String,
    pub model_key: String,
    pub branch: String,
    pub year: i64,
    pub price_minor: i64,
    pub status: Status,
    pub held_by: Option<Uuid>,
    pub location: GeoPoint,
    pub created_at: i64,
    pub version: i64,
    pub terms: Vec<String>,
}

impl Entry {
    fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        let make: String = row.try_get("make")?;
        let model: String = row.try_get("model")?;
        let description: String = row.try_get("description")?;
        Ok(Self {
            id: row.uuid("id")?,
            vehicle_type: row.parsed("vehicle_type")?,
            terms: domain::terms(&make, &model, &description),
            make,
            make_key: row.try_get("make_key")?,
            model_key: row.try_get("model_key")?,
            branch: row.try_get("branch")?,
            year: row.try_get("year")?,
            price_minor: row.try_get("price_minor")?,
            status: row.parsed("status")?,
            held_by: row.opt_uuid("held_by")?,
            location: GeoPoint {
                latitude: row.try_get("latitude")?,
                longitude: row.try_get("longitude")?,
            },
            created_at: row.try_get("created_at")?,
            version: row.try_get("version")?,
        })
    }
}

fn cell(p: GeoPoint) -> (i32, i32) {
    (
        (p.latitude / CELL_DEGREES).floor() as i32,
        (p.longitude / CELL_DEGREES).floor() as i32,
    )
}

/// The bitmaps over slot numbers (a vehicle's slot never changes).
#[derive(Default)]
pub struct Inner {
    slots: Vec<Entry>,
    by_id: HashMap<Uuid, u32>,
    pub(crate) all: RoaringBitmap,
    pub(crate) by_type: HashMap<VehicleType, RoaringBitmap>,
    pub(crate) by_status: HashMap<Status, RoaringBitmap>,
    pub(crate) by_make: HashMap<String, RoaringBitmap>,
    pub(crate) by_make_key: HashMap<String, RoaringBitmap>,
    pub(crate) by_model_key: HashMap<String, RoaringBitmap>,
    pub(crate) by_branch: HashMap<String, RoaringBitmap>,
    pub(crate) by_holder: HashMap<Uuid, RoaringBitmap>,
    pub(crate) terms: BTreeMap<String, RoaringBitmap>,
    pub(crate) cells: HashMap<(i32, i32), RoaringBitmap>,
}

fn add<K: std::hash::Hash + Eq>(map: &mut HashMap<K, RoaringBitmap>, key: K, slot: u32) {
    map.entry(key).or_default().insert(slot);
}

fn remove<K: std::hash::Hash + Eq>(map: &mut HashMap<K, RoaringBitmap>, key: &K, slot: u32) {
    if let Some(b) = map.get_mut(key) {
        b.remove(slot);
        if b.is_empty() {
            map.remove(key);
        }
    }
}

impl Inner {
    pub(crate) fn entry(&self, slot: u32) -> &Entry {
        &self.slots[slot as usize]
    }

    fn link(&mut self, slot: u32, e: &Entry) {
        self.all.insert(slot);
        add(&mut self.by_type, e.vehicle_type, slot);
        add(&mut self.by_status, e.status, slot);
        add(&mut self.by_make, e.make.clone(), slot);
        add(&mut self.by_make_key, e.make_key.clone(), slot);
        add(&mut self.by_model_key, e.model_key.clone(), slot);
        add(&mut self.by_branch, e.branch.clone(), slot);
        if let Some(h) = e.held_by {
            add(&mut self.by_holder, h, slot);
        }
        for t in &e.terms {
            self.terms.entry(t.clone()).or_default().insert(slot);
        }
        add(&mut self.cells, cell(e.location), slot);
    }

    fn unlink(&mut self, slot: u32, e: &Entry) {
        remove(&mut self.by_type, &e.vehicle_type, slot);
        remove(&mut self.by_status, &e.status, slot);
        remove(&mut self.by_make, &e.make, slot);
        remove(&mut self.by_make_key, &e.make_key, slot);
        remove(&mut self.by_model_key, &e.model_key, slot);
        remove(&mut self.by_branch, &e.branch, slot);
        if let Some(h) = e.held_by {
            remove(&mut self.by_holder, &h, slot);
        }
        for t in &e.terms {
            if let Some(b) = self.terms.get_mut(t) {
                b.remove(slot);
                if b.is_empty() {
                    self.terms.remove(t);
                }
            }
        }
        remove(&mut self.cells, &cell(e.location), slot);
    }

    /// Inserts or replaces a vehicle, unless the index already has a newer version.
    fn upsert(&mut self, e: Entry) {
        match self.by_id.get(&e.id).copied() {
            Some(slot) => {
                if self.slots[slot as usize].version >= e.version {
                    return;
                }
                let old = std::mem::replace(&mut self.slots[slot as usize], e);
                self.unlink(slot, &old);
                let new = self.slots[slot as usize].clone();
                self.link(slot, &new);
            }
            None => {
                let slot = self.slots.len() as u32;
                self.link(slot, &e);
                self.by_id.insert(e.id, slot);
                self.slots.push(e);
            }
        }
    }

    /// Every slot whose word starts with `prefix`.
    pub(crate) fn prefix(&self, prefix: &str) -> RoaringBitmap {
        let mut out = RoaringBitmap::new();
        for (_, b) in self
            .terms
            .range(prefix.to_owned()..)
            .take_while(|(t, _)| t.starts_with(prefix))
        {
            out |= b;
        }
        out
    }

    /// Every slot in a grid cell that overlaps the box.
    pub(crate) fn in_box(
        &self,
        lat_lo: f64,
        lat_hi: f64,
        lon_lo: f64,
        lon_hi: f64,
    ) -> RoaringBitmap {
        let (a, b) = cell(GeoPoint {
            latitude: lat_lo,
            longitude: lon_lo,
        });
        let (c, d) = cell(GeoPoint {
            latitude: lat_hi,
            longitude: lon_hi,
        });
        let mut out = RoaringBitmap::new();
        let cells = i64::from(c - a + 1) * i64::from(d - b + 1);
        if cells as usize > self.cells.len() {
            // A huge radius: walk the occupied cells instead of the box's.
            for (&(x, y), bits) in &self.cells {
                if (a..=c).contains(&x) && (b..=d).contains(&y) {
                    out |= bits;
                }
            }
            return out;
        }
        for x in a..=c {
            for y in b..=d {
                if let Some(bits) = self.cells.get(&(x, y)) {
                    out |= bits;
                }
            }
        }
        out
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
}

/// The index, shared by every handler of a process.
#[derive(Clone, Default)]
pub struct Index {
    inner: Arc<RwLock<Inner>>,
    /// The change-log position the index has applied up to.
    position: Arc<std::sync::atomic::AtomicI64>,
    /// Whether [`Index::load`] ran: an index nobody searches (the CLI's) is not kept.
    loaded: Arc<std::sync::atomic::AtomicBool>,
}

impl Index {
    /// Reads with the index locked. Never held across an await.
    pub fn read<T>(&self, f: impl FnOnce(&Inner) -> T) -> T {
        let guard = self.inner.read().unwrap_or_else(|p| p.into_inner());
        f(&guard)
    }

    fn write<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        let mut guard = self.inner.write().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }

    pub fn position(&self) -> i64 {
        self.position.load(std::sync::atomic::Ordering::Acquire)
    }

    pub fn set_position(&self, p: i64) {
        self.position.store(p, std::sync::atomic::Ordering::Release);
    }

    /// Fills the index with every vehicle. The change-log position is read
    /// first, so a change committed during the load is applied again by the
    /// tail (harmless: refreshes are idempotent and version-guarded).
    pub async fn load(&self, db: &Db) -> Result<usize, sqlx::Error> {
        let position = crate::store::last_change_position(db).await?;
        let sql = format!("SELECT {PROJECTION} FROM vehicles");
        let mut rows = sqlx::query(&sql).fetch(db.reader());
        let mut entries = Vec::new();
        use futures::TryStreamExt;
        while let Some(row) = rows.try_next().await? {
            entries.push(Entry::from_row(&row)?);
        }
        let n = entries.len();
        self.write(|inner| {
            for e in entries {
                inner.upsert(e);
            }
        });
        self.set_position(position);
        self.loaded
            .store(true, std::sync::atomic::Ordering::Release);
        Ok(n)
    }

    /// Re-reads these vehicles from `pool` and applies what changed.
    pub async fn refresh(&self, pool: &AnyPool, ids: &[Uuid]) -> Result<(), sqlx::Error> {
        if !self.loaded.load(std::sync::atomic::Ordering::Acquire) {
            return Ok(());
        }
        for chunk in ids.chunks(500) {
            if chunk.is_empty() {
                continue;
            }
            let placeholders: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT {PROJECTION} FROM vehicles WHERE id IN ({})",
                placeholders.join(", ")
            );
            let mut q = sqlx::query(&sql);
            for id in chunk {
                q = q.bind(id.to_string());
            }
            let entries = q
                .fetch_all(pool)
                .await?
                .iter()
                .map(Entry::from_row)
                .collect::<Result<Vec<_>, _>>()?;
            self.write(|inner| {
                for e in entries {
                    inner.upsert(e);
                }
            });
        }
        Ok(())
    }

    /// Whether `customer` holds any vehicle (reserved for them, under their contract, theirs).
    pub fn holds_any(&self, customer: Uuid) -> bool {
        self.read(|i| i.by_holder.contains_key(&customer))
    }
}
