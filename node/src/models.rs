//! Content-addressed model store: `<dir>/<sha256 hex>.onnx`. Files are
//! written under a temporary name, hash-checked, then renamed into place, so a
//! model is either whole and verified or absent. Size-limited: fetched models
//! are evicted oldest first when the limit would be exceeded.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use crate::core::sha256;
use crate::hex::{hex, parse_hex32};

/// Default total size of the model store.
pub const DEFAULT_LIMIT: u64 = crate::core::DEFAULT_MODEL_CACHE_BYTES;

/// Why a model could not be stored or found.
#[derive(Debug)]
pub enum ModelError {
    HashMismatch {
        expected: [u8; 32],
        actual: [u8; 32],
    },
    TooLarge {
        len: u64,
        limit: u64,
    },
    NotFound {
        hash: [u8; 32],
    },
    /// Models the operator added (pinned, never evicted) leave no room.
    NoRoom {
        len: u64,
        pinned: u64,
        limit: u64,
    },
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl fmt::Display for ModelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::HashMismatch { expected, actual } => write!(
                f,
                "model bytes hash to {} but {} was expected; refused",
                hex(actual),
                hex(expected)
            ),
            Self::TooLarge { len, limit } => {
                write!(
                    f,
                    "model of {len} bytes exceeds the model cache limit of {limit} bytes"
                )
            }
            Self::NotFound { hash } => write!(f, "model {} is not in the store", hex(hash)),
            Self::NoRoom { len, pinned, limit } => write!(
                f,
                "no room for a model of {len} bytes: models added with `p2pa model add` hold {pinned} of the {limit} bytes allowed"
            ),
            Self::Io { path, source } => write!(f, "{}: {source}", path.display()),
        }
    }
}

impl std::error::Error for ModelError {}

/// A directory of models named by their SHA-256.
#[derive(Debug, Clone)]
pub struct ModelStore {
    dir: PathBuf,
    limit: u64,
}

impl ModelStore {
    /// A store in `dir` holding at most `limit` bytes.
    pub fn new(dir: impl Into<PathBuf>, limit: u64) -> Self {
        Self {
            dir: dir.into(),
            limit,
        }
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The store's size limit.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ModelError + '_ {
        move |source| ModelError::Io {
            path: path.to_owned(),
            source,
        }
    }

    /// Where the model `hash` lives (whether or not it is there).
    pub fn path(&self, hash: &[u8; 32]) -> PathBuf {
        self.dir.join(format!("{}.onnx", hex(hash)))
    }

    /// The marker that pins model `hash` (added by the operator: never evicted).
    fn pin_path(&self, hash: &[u8; 32]) -> PathBuf {
        self.dir.join(format!("{}.pin", hex(hash)))
    }

    /// Whether the operator added model `hash` (it is never evicted).
    pub fn is_pinned(&self, hash: &[u8; 32]) -> bool {
        self.pin_path(hash).is_file()
    }

    /// Whether the model is in the store.
    pub fn contains(&self, hash: &[u8; 32]) -> bool {
        self.path(hash).is_file()
    }

    /// Hashes of every model in the store, newest first.
    pub fn list(&self) -> Vec<([u8; 32], u64)> {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut found: Vec<([u8; 32], u64, std::time::SystemTime)> = entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let hash = parse_hex32(name.strip_suffix(".onnx")?)?;
                let meta = e.metadata().ok()?;
                Some((hash, meta.len(), meta.modified().ok()?))
            })
            .collect();
        found.sort_by_key(|m| std::cmp::Reverse(m.2));
        found.into_iter().map(|(h, l, _)| (h, l)).collect()
    }

    /// Stores `bytes` if they hash to `expected` (any hash when `None`);
    /// returns the hash. Evicts older models to stay under the limit.
    pub fn put(&self, expected: Option<[u8; 32]>, bytes: &[u8]) -> Result<[u8; 32], ModelError> {
        let actual = sha256(bytes);
        if let Some(expected) = expected.filter(|e| *e != actual) {
            return Err(ModelError::HashMismatch { expected, actual });
        }
        let len = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
        if len > self.limit {
            return Err(ModelError::TooLarge {
                len,
                limit: self.limit,
            });
        }
        fs::create_dir_all(&self.dir).map_err(Self::io(&self.dir))?;
        let path = self.path(&actual);
        if path.is_file() {
            return Ok(actual);
        }
        self.evict_for(len)?;
        let tmp = self.dir.join(format!(".{}.part", hex(&actual)));
        fs::write(&tmp, bytes).map_err(Self::io(&tmp))?;
        fs::rename(&tmp, &path).map_err(Self::io(&path))?;
        Ok(actual)
    }

    /// Copies a model file into the store and pins it: models fetched later
    /// never evict it.
    pub fn add_file(&self, file: &Path) -> Result<[u8; 32], ModelError> {
        let bytes = fs::read(file).map_err(Self::io(file))?;
        let hash = self.put(None, &bytes)?;
        let pin = self.pin_path(&hash);
        fs::write(&pin, b"").map_err(Self::io(&pin))?;
        Ok(hash)
    }

    /// Reads model `hash`, checking its bytes still hash to it.
    pub fn read(&self, hash: &[u8; 32]) -> Result<Vec<u8>, ModelError> {
        let path = self.path(hash);
        let bytes = fs::read(&path).map_err(|_| ModelError::NotFound { hash: *hash })?;
        let actual = sha256(&bytes);
        if actual != *hash {
            return Err(ModelError::HashMismatch {
                expected: *hash,
                actual,
            });
        }
        Ok(bytes)
    }

    /// Evicts the oldest unpinned models until `incoming` bytes fit.
    fn evict_for(&self, incoming: u64) -> Result<(), ModelError> {
        let mut models = self.list();
        let mut total: u64 = models.iter().map(|m| m.1).sum();
        let pinned: u64 = models
            .iter()
            .filter(|m| self.is_pinned(&m.0))
            .map(|m| m.1)
            .sum();
        if pinned.saturating_add(incoming) > self.limit {
            return Err(ModelError::NoRoom {
                len: incoming,
                pinned,
                limit: self.limit,
            });
        }
        models.retain(|m| !self.is_pinned(&m.0));
        while total.saturating_add(incoming) > self.limit {
            let Some((hash, len)) = models.pop() else {
                break;
            };
            if fs::remove_file(self.path(&hash)).is_ok() {
                log::info!(
                    "evicted model {} ({len} bytes) to stay under {} bytes",
                    hex(&hash),
                    self.limit
                );
            }
            total = total.saturating_sub(len);
        }
        Ok(())
    }
}

/// A directory of one unit test, removed when dropped (a failing test too).
#[cfg(test)]
#[derive(Debug)]
pub(crate) struct TestDir(pub(crate) PathBuf);

#[cfg(test)]
impl TestDir {
    pub(crate) fn new(name: &str) -> Self {
        let d = std::env::temp_dir().join(format!("p2pa-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        Self(d)
    }
}

#[cfg(test)]
impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(name: &str, limit: u64) -> (ModelStore, TestDir) {
        let d = TestDir::new(&format!("models-{name}"));
        (ModelStore::new(d.0.clone(), limit), d)
    }

    #[test]
    fn models_are_content_addressed_verified_and_bounded() {
        let (s, _dir) = store("basic", 100);
        let h = s.put(None, b"model one").unwrap();
        assert_eq!(h, sha256(b"model one"));
        assert_eq!(s.read(&h).unwrap(), b"model one");
        assert!(matches!(
            s.put(Some([0; 32]), b"x"),
            Err(ModelError::HashMismatch { .. })
        ));
        assert!(matches!(
            s.put(None, &[0u8; 101]),
            Err(ModelError::TooLarge {
                len: 101,
                limit: 100
            })
        ));
        std::thread::sleep(std::time::Duration::from_millis(20));
        let h2 = s.put(None, &[1u8; 95]).unwrap();
        assert!(!s.contains(&h), "older model evicted to fit");
        assert!(s.contains(&h2));
        // A file changed on disk no longer matches its name.
        fs::write(s.path(&h2), b"tampered").unwrap();
        assert!(matches!(s.read(&h2), Err(ModelError::HashMismatch { .. })));
        assert!(matches!(s.read(&[9; 32]), Err(ModelError::NotFound { .. })));
    }

    #[test]
    fn models_the_operator_added_are_never_evicted() {
        let (s, _dir) = store("pinned", 100);
        let file = std::env::temp_dir().join(format!("p2pa-pinned-src-{}", std::process::id()));
        fs::write(&file, [7u8; 60]).unwrap();
        let mine = s.add_file(&file).unwrap();
        assert!(s.is_pinned(&mine));
        std::thread::sleep(std::time::Duration::from_millis(20));
        let fetched = s.put(None, &[1u8; 30]).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        // 60 pinned + 30 + 30 > 100: the fetched one goes, the pinned one stays.
        let newer = s.put(None, &[2u8; 30]).unwrap();
        assert!(s.contains(&mine) && s.contains(&newer) && !s.contains(&fetched));
        // No room beside the pinned model: refused with a clear reason.
        assert!(matches!(
            s.put(None, &[3u8; 50]),
            Err(ModelError::NoRoom { pinned: 60, .. })
        ));
        assert!(s.contains(&mine));
        let _ = fs::remove_file(&file);
    }
}
