//! The node's identity on disk: an Ed25519 seed in `<data-dir>/identity.key`,
//! mode 0600, made on first start. A key file others can read is refused.

use std::fmt;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use p2pa_protocol::Keypair;

use crate::core::Entropy;
use crate::hex::{hex, parse_hex32};

/// File name of the key inside the data directory.
pub const KEY_FILE: &str = "identity.key";

/// Why the identity could not be loaded or made.
#[derive(Debug)]
pub enum IdentityError {
    /// The key file is readable or writable by others.
    Insecure { path: PathBuf, mode: u32 },
    /// The key file exists but is not a key.
    Malformed { path: PathBuf },
    /// `keygen` without `--force` over an existing key.
    Exists { path: PathBuf },
    /// The random source failed: no key can be made.
    NoEntropy,
    /// Reading or writing failed.
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl fmt::Display for IdentityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Insecure { path, mode } => write!(
                f,
                "key file {} has mode {:o}, readable by others; run `chmod 600 {}` (or make a new key with `p2pa keygen --force`)",
                path.display(),
                mode & 0o777,
                path.display()
            ),
            Self::Malformed { path } => write!(
                f,
                "key file {} is not a p2pa key (expected 64 hex digits); move it away or run `p2pa keygen --force`",
                path.display()
            ),
            Self::Exists { path } => write!(
                f,
                "a key already exists at {}; pass --force to replace it (the node id will change)",
                path.display()
            ),
            Self::NoEntropy => f.write_str(
                "the operating system's random source failed: no key can be made",
            ),
            Self::Io { path, source } => write!(f, "{}: {source}", path.display()),
        }
    }
}

impl std::error::Error for IdentityError {}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> IdentityError + '_ {
    move |source| IdentityError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Loads the key in `dir`, making one if there is none.
pub fn load_or_create(dir: &Path, rng: &mut dyn Entropy) -> Result<Keypair, IdentityError> {
    let path = dir.join(KEY_FILE);
    if path.exists() {
        load(&path)
    } else {
        create(dir, rng, false)
    }
}

/// Loads the key at `path`, refusing one others can read.
pub fn load(path: &Path) -> Result<Keypair, IdentityError> {
    Keypair::try_from_seed(read_secret(path)?).ok_or_else(|| IdentityError::Malformed {
        path: path.to_owned(),
    })
}

/// The 32 bytes written as 64 hex digits in the file at `path`, refusing a
/// file others can read.
fn read_secret(path: &Path) -> Result<[u8; 32], IdentityError> {
    let meta = fs::metadata(path).map_err(io_err(path))?;
    let mode = meta.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(IdentityError::Insecure {
            path: path.to_owned(),
            mode,
        });
    }
    let text = fs::read_to_string(path).map_err(|_| IdentityError::Malformed {
        path: path.to_owned(),
    })?;
    parse_hex32(text.trim()).ok_or_else(|| IdentityError::Malformed {
        path: path.to_owned(),
    })
}

/// Writes `secret` as hex to `path`, mode 0600, through a temporary file
/// beside it (so a crash leaves the old file or the new one, whole).
fn write_secret(path: &Path, secret: &[u8; 32]) -> Result<(), IdentityError> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let tmp = path.with_file_name(format!(".{}.new", name.unwrap_or_default()));
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io_err(&tmp))?;
    writeln!(f, "{}", hex(secret)).map_err(io_err(&tmp))?;
    f.sync_all().map_err(io_err(&tmp))?;
    fs::rename(&tmp, path).map_err(io_err(path))
}

/// Makes a new key in `dir` (replacing an old one only with `force`).
pub fn create(dir: &Path, rng: &mut dyn Entropy, force: bool) -> Result<Keypair, IdentityError> {
    let path = dir.join(KEY_FILE);
    if path.exists() && !force {
        return Err(IdentityError::Exists { path });
    }
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    let mut seed = [0u8; 32];
    rng.fill(&mut seed).map_err(|_| IdentityError::NoEntropy)?;
    let key = Keypair::try_from_seed(seed)
        .ok_or_else(|| IdentityError::Malformed { path: path.clone() })?;
    write_secret(&path, &seed)?;
    Ok(key)
}

/// Loads a network key (64 hex digits) from `path`, refusing a file others
/// can read.
pub fn load_network_key(path: &Path) -> Result<[u8; 32], IdentityError> {
    read_secret(path)
}

/// Makes a new network key at `path` (mode 0600; replacing an old one only
/// with `force`).
pub fn create_network_key(
    path: &Path,
    rng: &mut dyn Entropy,
    force: bool,
) -> Result<[u8; 32], IdentityError> {
    if path.exists() && !force {
        return Err(IdentityError::Exists {
            path: path.to_owned(),
        });
    }
    let mut key = [0u8; 32];
    rng.fill(&mut key).map_err(|_| IdentityError::NoEntropy)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
    }
    write_secret(path, &key)?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::SeededEntropy;

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("p2pa-id-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn key_is_made_once_with_mode_0600_and_reloaded() {
        let dir = tmpdir("make");
        let mut rng = SeededEntropy::new(1);
        let a = load_or_create(&dir, &mut rng).unwrap();
        let mode = fs::metadata(dir.join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let b = load_or_create(&dir, &mut rng).unwrap();
        assert_eq!(a.node_id(), b.node_id());
        assert!(matches!(
            create(&dir, &mut rng, false),
            Err(IdentityError::Exists { .. })
        ));
        let c = create(&dir, &mut rng, true).unwrap();
        assert_ne!(c.node_id(), a.node_id());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn key_readable_by_others_is_refused() {
        let dir = tmpdir("perm");
        let mut rng = SeededEntropy::new(2);
        load_or_create(&dir, &mut rng).unwrap();
        let path = dir.join(KEY_FILE);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = load_or_create(&dir, &mut rng).unwrap_err();
        assert!(matches!(err, IdentityError::Insecure { .. }));
        assert!(err.to_string().contains("chmod 600"), "{err}");
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn malformed_key_file_is_refused() {
        let dir = tmpdir("bad");
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join(KEY_FILE);
        fs::write(&path, "not a key").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(load(&path), Err(IdentityError::Malformed { .. })));
        // All zeros parses as hex but is no Ed25519 key: refused, no panic.
        fs::write(&path, "0".repeat(64)).unwrap();
        assert!(matches!(load(&path), Err(IdentityError::Malformed { .. })));
        let _ = fs::remove_dir_all(&dir);
    }
}
