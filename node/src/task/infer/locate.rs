//! Where onnxruntime's shared library is on this host. Looked up once, by
//! the node at start (its inference children get the path), in this order:
//! the path the user named (`--onnxruntime-lib`, `P2PA_ONNXRUNTIME_LIB`), the
//! standard `ORT_DYLIB_PATH`, an installed onnxruntime Python package (the
//! `capi/` folder of `python3 -c "import onnxruntime"`), then the system's
//! `libonnxruntime.so` on the loader's search path.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Where a library path came from (said at start, so a user knows which
/// onnxruntime runs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `--onnxruntime-lib` or `P2PA_ONNXRUNTIME_LIB`.
    Named,
    /// `ORT_DYLIB_PATH`.
    OrtDylibPath,
    /// The onnxruntime Python package of `python3`.
    Python,
    /// The system loader's search path.
    System,
}

impl Source {
    /// How the start line says it.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Named => "as named",
            Self::OrtDylibPath => "from ORT_DYLIB_PATH",
            Self::Python => "from the onnxruntime Python package",
            Self::System => "from the system's library path",
        }
    }
}

/// The system library's name, as the loader looks it up.
const SYSTEM_NAME: &str = "libonnxruntime.so";

/// The library to try, and where its path came from. `named` is the user's
/// explicit path; with it nothing else is tried.
pub fn find(named: Option<&Path>) -> (PathBuf, Source) {
    if let Some(p) = named {
        return (p.to_path_buf(), Source::Named);
    }
    if let Some(p) = env_path("P2PA_ONNXRUNTIME_LIB") {
        return (p, Source::Named);
    }
    if let Some(p) = env_path("ORT_DYLIB_PATH") {
        return (p, Source::OrtDylibPath);
    }
    if let Some(p) = python_package() {
        return (p, Source::Python);
    }
    (PathBuf::from(SYSTEM_NAME), Source::System)
}

fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// The library inside the onnxruntime package `python3` imports, if any.
fn python_package() -> Option<PathBuf> {
    let python: OsString = std::env::var_os("P2PA_PYTHON").unwrap_or_else(|| "python3".into());
    let out = Command::new(python)
        .args([
            "-c",
            "import os, onnxruntime; print(os.path.dirname(onnxruntime.__file__))",
        ])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let dir = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim()).join("capi");
    library_in(&dir)
}

/// `libonnxruntime.so.X.Y.Z` (or the plain `.so`/`.dylib`) in `dir`.
pub fn library_in(dir: &Path) -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                n.starts_with("libonnxruntime.so")
                    || n == "libonnxruntime.dylib"
                    || (n.starts_with("libonnxruntime.") && n.ends_with(".dylib"))
            })
        })
        .collect();
    // The versioned name is the real file; the shortest name sorts first.
    found.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    found.into_iter().next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_named_path_wins_and_the_versioned_library_is_found_in_a_folder() {
        let (p, s) = find(Some(Path::new("/opt/ort/lib.so")));
        assert_eq!(
            (p.as_path(), s),
            (Path::new("/opt/ort/lib.so"), Source::Named)
        );
        let dir = crate::models::TestDir::new("locate");
        std::fs::create_dir_all(&dir.0).unwrap();
        for f in [
            "libonnxruntime.so.1.32.0",
            "libonnxruntime_providers_shared.so",
            "x.py",
        ] {
            std::fs::write(dir.0.join(f), b"").unwrap();
        }
        assert_eq!(
            library_in(&dir.0).unwrap(),
            dir.0.join("libonnxruntime.so.1.32.0")
        );
        std::fs::remove_file(dir.0.join("libonnxruntime.so.1.32.0")).unwrap();
        assert_eq!(
            library_in(&dir.0),
            None,
            "providers_shared is not the runtime"
        );
    }
}
