//! Fields at rest: AES-256-GCM with a random nonce and the key id written into
//! the ciphertext, so keys can rotate while old rows stay readable; and a keyed
//! HMAC "blind index" so an encrypted phone or email can still be looked up.
//! Blind-index keys rotate too: they have ids, one is active (new rows are
//! indexed under it) and older ones stay for lookups until no row uses them.
//!
//! Ciphertext layout: `0x01 | key-id length | key id | 12-byte nonce | sealed`.
//! The field name is bound in as associated data, so a ciphertext copied into
//! another column does not decrypt.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use zeroize::Zeroizing;

const FORMAT_V1: u8 = 1;
const NONCE_LEN: usize = 12;

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("ciphertext is malformed")]
    Malformed,
    #[error("no key with id {0:?}")]
    UnknownKey(String),
    #[error("ciphertext failed authentication")]
    Tampered,
    #[error("key material: {0}")]
    BadKey(String),
    #[error("key file: {0}")]
    Io(#[from] std::io::Error),
}

/// The data keys (one active, older ones kept for reading) and the
/// blind-index keys (one active, older ones kept for lookups).
pub struct Keyring {
    state: RwLock<KeyState>,
    /// Where the keys came from; re-read when a ciphertext names a key we do not
    /// hold yet, which is how a running server picks up a rotation.
    reload_from: Option<PathBuf>,
}

#[derive(Clone)]
struct KeyState {
    keys: BTreeMap<String, Zeroizing<[u8; 32]>>,
    active: String,
    blind_keys: BTreeMap<String, Zeroizing<Vec<u8>>>,
    active_blind: String,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("active", &self.active_key_id())
            .finish_non_exhaustive()
    }
}

/// The id a lone blind-index key (`blind_index_key`, `MILIKI_BLIND_INDEX_KEY`)
/// goes by, and the key every row indexed before rotation existed names.
pub const FIRST_BLIND_KEY: &str = "b1";

/// Key material in its stored form: base64 keys by id.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct KeyMaterial {
    pub active_key: String,
    pub keys: BTreeMap<String, String>,
    /// The first blind-index key, known as [`FIRST_BLIND_KEY`]; empty once
    /// retired or when all blind keys are in `blind_index_keys`.
    #[serde(default)]
    pub blind_index_key: String,
    /// Further blind-index keys by id (`b2`, ...), added by rotation.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub blind_index_keys: BTreeMap<String, String>,
    /// The blind key new rows are indexed under; unset: the newest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_blind_key: Option<String>,
}

impl KeyMaterial {
    /// Fresh random material with a single key `k1`.
    pub fn generate() -> Self {
        let mut keys = BTreeMap::new();
        keys.insert("k1".to_owned(), random_b64(32));
        Self {
            active_key: "k1".to_owned(),
            keys,
            blind_index_key: random_b64(32),
            blind_index_keys: BTreeMap::new(),
            active_blind_key: None,
        }
    }

    /// Every blind-index key by id, the lone first one as [`FIRST_BLIND_KEY`].
    pub fn blind_keys(&self) -> BTreeMap<String, String> {
        let mut all = self.blind_index_keys.clone();
        if !self.blind_index_key.is_empty() {
            all.entry(FIRST_BLIND_KEY.to_owned())
                .or_insert_with(|| self.blind_index_key.clone());
        }
        all
    }

    /// The id of the blind key new rows are indexed under: the configured
    /// one, else the newest (highest-numbered).
    pub fn active_blind_id(&self) -> Option<String> {
        self.active_blind_key.clone().or_else(|| {
            self.blind_keys()
                .into_keys()
                .max_by_key(|id| (id.trim_start_matches('b').parse::<u64>().ok(), id.clone()))
        })
    }

    /// Adds a new blind-index key and makes it the active one; returns its id.
    pub fn add_blind_key(&mut self) -> String {
        let existing = self.blind_keys();
        let next = (1..)
            .map(|n| format!("b{n}"))
            .find(|id| !existing.contains_key(id))
            .unwrap_or_else(|| format!("b{}", crate::id::new_id().simple()));
        self.blind_index_keys.insert(next.clone(), random_b64(32));
        self.active_blind_key = Some(next.clone());
        next
    }

    /// Drops a blind-index key that is not the active one.
    pub fn remove_blind_key(&mut self, id: &str) -> Result<(), CryptoError> {
        if self.active_blind_id().as_deref() == Some(id) {
            return Err(CryptoError::BadKey(format!(
                "blind key {id} is the active one; rotate first"
            )));
        }
        let removed = self.blind_index_keys.remove(id).is_some();
        let first = id == FIRST_BLIND_KEY && !self.blind_index_key.is_empty();
        if first {
            self.blind_index_key.clear();
        }
        if removed || first {
            Ok(())
        } else {
            Err(CryptoError::UnknownKey(id.to_owned()))
        }
    }

    /// Adds a new key and makes it the active one; returns its id.
    pub fn add_key(&mut self) -> String {
        let next = (1..)
            .map(|n| format!("k{n}"))
            .find(|id| !self.keys.contains_key(id))
            .unwrap_or_else(|| format!("k{}", crate::id::new_id().simple()));
        self.keys.insert(next.clone(), random_b64(32));
        self.active_key = next.clone();
        next
    }

    /// Parses `k1:BASE64,k2:BASE64` as given in configuration.
    pub fn parse_key_list(list: &str) -> Result<BTreeMap<String, String>, CryptoError> {
        list.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .enumerate()
            .map(|(n, entry)| {
                // Never echo the entry: it is secret material.
                entry
                    .split_once(':')
                    .map(|(id, key)| (id.trim().to_owned(), key.trim().to_owned()))
                    .ok_or_else(|| {
                        CryptoError::BadKey(format!(
                            "entry {} is not of the form id:base64 ({} characters, no colon)",
                            n + 1,
                            entry.len()
                        ))
                    })
            })
            .collect()
    }
}

/// Random bytes, base64-encoded: for generated secrets.
pub fn random_b64(len: usize) -> String {
    let mut bytes = vec![0u8; len];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    B64.encode(bytes)
}

impl Keyring {
    pub fn from_material(material: &KeyMaterial) -> Result<Self, CryptoError> {
        Ok(Self {
            state: RwLock::new(KeyState::from_material(material)?),
            reload_from: None,
        })
    }

    /// Loads a TOML key file, re-reading it later if a newer key shows up in the data.
    pub fn from_file(path: &Path) -> Result<Self, CryptoError> {
        let material = read_key_file(path)?;
        Ok(Self {
            state: RwLock::new(KeyState::from_material(&material)?),
            reload_from: Some(path.to_owned()),
        })
    }

    pub fn active_key_id(&self) -> String {
        self.read().active.clone()
    }

    /// The id of the blind-index key new rows are indexed under.
    pub fn active_blind_key_id(&self) -> String {
        self.read().active_blind.clone()
    }

    /// The ids of every blind-index key held, the active one first.
    pub fn blind_key_ids(&self) -> Vec<String> {
        let state = self.read();
        std::iter::once(state.active_blind.clone())
            .chain(
                state
                    .blind_keys
                    .keys()
                    .filter(|id| **id != state.active_blind)
                    .cloned(),
            )
            .collect()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, KeyState> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Seals `plaintext` under the active key, bound to `field`.
    pub fn encrypt(&self, field: &str, plaintext: &[u8]) -> Vec<u8> {
        let state = self.read();
        let key = &state.keys[&state.active];
        let cipher = Aes256Gcm::new_from_slice(key.as_slice()).expect("32-byte key");
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let sealed = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: field.as_bytes(),
                },
            )
            .expect("AES-GCM encryption does not fail for in-memory buffers");
        let kid = state.active.as_bytes();
        let mut out = Vec::with_capacity(2 + kid.len() + NONCE_LEN + sealed.len());
        out.push(FORMAT_V1);
        out.push(kid.len() as u8);
        out.extend_from_slice(kid);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    pub fn encrypt_str(&self, field: &str, plaintext: &str) -> Vec<u8> {
        self.encrypt(field, plaintext.as_bytes())
    }

    /// Opens a ciphertext written by [`Keyring::encrypt`] under any key we hold.
    pub fn decrypt(&self, field: &str, blob: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let (kid, nonce, sealed) = split(blob)?;
        if !self.read().keys.contains_key(kid) {
            self.reload()?;
        }
        let state = self.read();
        let key = state
            .keys
            .get(kid)
            .ok_or_else(|| CryptoError::UnknownKey(kid.to_owned()))?;
        let cipher = Aes256Gcm::new_from_slice(key.as_slice()).expect("32-byte key");
        cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: field.as_bytes(),
                },
            )
            .map_err(|_| CryptoError::Tampered)
    }

    pub fn decrypt_string(&self, field: &str, blob: &[u8]) -> Result<String, CryptoError> {
        String::from_utf8(self.decrypt(field, blob)?).map_err(|_| CryptoError::Malformed)
    }

    /// True when `blob` was sealed under a key other than the active one.
    pub fn needs_rotation(&self, blob: &[u8]) -> bool {
        split(blob)
            .map(|(kid, _, _)| kid != self.read().active)
            .unwrap_or(false)
    }

    /// The blind index of a normalised value under the active blind key:
    /// HMAC-SHA256 keyed separately from the data keys, hex-encoded,
    /// domain-separated by field.
    pub fn blind_index(&self, field: &str, normalised: &str) -> String {
        let state = self.read();
        let key = &state.blind_keys[&state.active_blind];
        mac_hex(key, field, normalised)
    }

    /// The blind index of a value under each key held, the active key's
    /// first: a lookup matches rows indexed before, during or after a rotation.
    pub fn blind_indexes(&self, field: &str, normalised: &str) -> Vec<String> {
        let ids = self.blind_key_ids();
        let state = self.read();
        ids.iter()
            .filter_map(|id| state.blind_keys.get(id))
            .map(|key| mac_hex(key, field, normalised))
            .collect()
    }

    /// The blind index under one named key, if it is held.
    pub fn blind_index_with(&self, key_id: &str, field: &str, normalised: &str) -> Option<String> {
        let state = self.read();
        state
            .blind_keys
            .get(key_id)
            .map(|key| mac_hex(key, field, normalised))
    }

    /// Re-reads the key file, if the keys came from one.
    pub fn reload(&self) -> Result<(), CryptoError> {
        if let Some(path) = &self.reload_from {
            let fresh = KeyState::from_material(&read_key_file(path)?)?;
            *self.state.write().unwrap_or_else(|e| e.into_inner()) = fresh;
        }
        Ok(())
    }
}

impl KeyState {
    fn from_material(m: &KeyMaterial) -> Result<Self, CryptoError> {
        let mut keys = BTreeMap::new();
        for (id, b64) in &m.keys {
            if id.is_empty() || id.len() > 255 {
                return Err(CryptoError::BadKey(format!("bad key id {id:?}")));
            }
            let raw = B64
                .decode(b64)
                .map_err(|_| CryptoError::BadKey(format!("key {id} is not base64")))?;
            let key: [u8; 32] = raw
                .try_into()
                .map_err(|_| CryptoError::BadKey(format!("key {id} is not 32 bytes")))?;
            keys.insert(id.clone(), Zeroizing::new(key));
        }
        if !keys.contains_key(&m.active_key) {
            return Err(CryptoError::BadKey(format!(
                "active key {:?} is not among the keys",
                m.active_key
            )));
        }
        let mut blind_keys = BTreeMap::new();
        for (id, b64) in m.blind_keys() {
            if id.is_empty() || id.len() > 64 {
                return Err(CryptoError::BadKey(format!("bad blind key id {id:?}")));
            }
            let blind = B64
                .decode(&b64)
                .map_err(|_| CryptoError::BadKey(format!("blind index key {id} is not base64")))?;
            if blind.len() < 32 {
                return Err(CryptoError::BadKey(format!(
                    "blind index key {id} must be at least 32 bytes"
                )));
            }
            blind_keys.insert(id, Zeroizing::new(blind));
        }
        let active_blind = m
            .active_blind_id()
            .ok_or_else(|| CryptoError::BadKey("no blind index key".into()))?;
        if !blind_keys.contains_key(&active_blind) {
            return Err(CryptoError::BadKey(format!(
                "active blind index key {active_blind:?} is not among the blind keys"
            )));
        }
        Ok(Self {
            keys,
            active: m.active_key.clone(),
            blind_keys,
            active_blind,
        })
    }
}

fn split(blob: &[u8]) -> Result<(&str, &[u8], &[u8]), CryptoError> {
    let (&version, rest) = blob.split_first().ok_or(CryptoError::Malformed)?;
    if version != FORMAT_V1 {
        return Err(CryptoError::Malformed);
    }
    let (&kid_len, rest) = rest.split_first().ok_or(CryptoError::Malformed)?;
    let kid_len = usize::from(kid_len);
    if rest.len() < kid_len + NONCE_LEN + 16 {
        return Err(CryptoError::Malformed);
    }
    let (kid, rest) = rest.split_at(kid_len);
    let (nonce, sealed) = rest.split_at(NONCE_LEN);
    let kid = std::str::from_utf8(kid).map_err(|_| CryptoError::Malformed)?;
    Ok((kid, nonce, sealed))
}

fn mac_hex(key: &[u8], field: &str, normalised: &str) -> String {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(field.as_bytes());
    mac.update(&[0]);
    mac.update(normalised.as_bytes());
    hex(&mac.finalize().into_bytes())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads key material from a TOML file.
pub fn read_key_file(path: &Path) -> Result<KeyMaterial, CryptoError> {
    let text = std::fs::read_to_string(path)?;
    toml_from_str(&text)
}

fn toml_from_str(text: &str) -> Result<KeyMaterial, CryptoError> {
    use figment::providers::{Format, Toml};
    figment::Figment::from(Toml::string(text))
        .extract()
        .map_err(|e| CryptoError::BadKey(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_binds_the_field() {
        let ring = Keyring::from_material(&KeyMaterial::generate()).unwrap();
        let sealed = ring.encrypt_str("users.phone", "+254712345678");
        assert!(!sealed.windows(13).any(|w| w == b"+254712345678"));
        assert_eq!(
            ring.decrypt_string("users.phone", &sealed).unwrap(),
            "+254712345678"
        );
        assert!(matches!(
            ring.decrypt("users.email", &sealed),
            Err(CryptoError::Tampered)
        ));
        let mut flipped = sealed.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(matches!(
            ring.decrypt("users.phone", &flipped),
            Err(CryptoError::Tampered)
        ));
        assert!(matches!(
            ring.decrypt("users.phone", &[1, 2]),
            Err(CryptoError::Malformed)
        ));
    }

    #[test]
    fn nonces_differ_but_blind_indexes_match() {
        let ring = Keyring::from_material(&KeyMaterial::generate()).unwrap();
        assert_ne!(ring.encrypt_str("f", "x"), ring.encrypt_str("f", "x"));
        assert_eq!(ring.blind_index("f", "x"), ring.blind_index("f", "x"));
        assert_ne!(ring.blind_index("f", "x"), ring.blind_index("g", "x"));
    }

    #[test]
    fn blind_keys_rotate_and_retire() {
        let mut material = KeyMaterial::generate();
        let ring = Keyring::from_material(&material).unwrap();
        let before = ring.blind_index("f", "x");
        assert_eq!(ring.active_blind_key_id(), FIRST_BLIND_KEY);
        assert_eq!(material.add_blind_key(), "b2");
        let rotated = Keyring::from_material(&material).unwrap();
        assert_eq!(rotated.active_blind_key_id(), "b2");
        let after = rotated.blind_index("f", "x");
        assert_ne!(before, after);
        // Lookups match both the old and the new index, the new one first.
        assert_eq!(
            rotated.blind_indexes("f", "x"),
            vec![after.clone(), before.clone()]
        );
        assert_eq!(rotated.blind_index_with("b1", "f", "x"), Some(before));
        assert!(
            material.remove_blind_key("b2").is_err(),
            "the active key stays"
        );
        material.remove_blind_key("b1").unwrap();
        let retired = Keyring::from_material(&material).unwrap();
        assert_eq!(retired.blind_indexes("f", "x"), vec![after]);
        // The stored form round-trips.
        let text = toml::to_string(&material).unwrap();
        let back = toml_from_str(&text).unwrap();
        assert_eq!(back.blind_keys(), material.blind_keys());
        assert_eq!(back.active_blind_id().as_deref(), Some("b2"));
    }

    #[test]
    fn old_keys_still_decrypt_after_rotation() {
        let mut material = KeyMaterial::generate();
        let ring = Keyring::from_material(&material).unwrap();
        let old = ring.encrypt_str("f", "secret");
        material.add_key();
        let rotated = Keyring::from_material(&material).unwrap();
        assert!(rotated.needs_rotation(&old));
        assert_eq!(rotated.decrypt_string("f", &old).unwrap(), "secret");
        let new = rotated.encrypt_str("f", "secret");
        assert!(!rotated.needs_rotation(&new));
        assert_eq!(rotated.active_key_id(), "k2");
    }
}
