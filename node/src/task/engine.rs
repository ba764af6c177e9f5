//! Which inference engine runs a node's models: the names, the choice a
//! user makes (`--engine`) and what a node reports of it. No engine code
//! here, so every build (the board's, without inference, too) speaks of
//! engines the same way.

use std::path::PathBuf;

/// An inference engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EngineKind {
    /// tract: pure Rust, in every build.
    Tract,
    /// onnxruntime, loaded from the host at run time.
    Onnxruntime,
}

impl EngineKind {
    /// Its name on the command line and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            Self::Tract => "tract",
            Self::Onnxruntime => "onnxruntime",
        }
    }

    /// The engine named `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::Tract, Self::Onnxruntime]
            .into_iter()
            .find(|k| k.name() == name)
    }
}

impl std::fmt::Display for EngineKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Which engine a node uses (`--engine`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EngineChoice {
    /// onnxruntime when its library loads, else tract; a model onnxruntime
    /// refuses runs on tract.
    #[default]
    Auto,
    /// Only this engine; no fallback.
    Only(EngineKind),
}

impl EngineChoice {
    /// `auto`, `onnxruntime` or `tract`.
    pub fn from_name(name: &str) -> Option<Self> {
        if name == "auto" {
            return Some(Self::Auto);
        }
        EngineKind::from_name(name).map(Self::Only)
    }

    /// Its name, as [`EngineChoice::from_name`] takes it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Only(k) => k.name(),
        }
    }
}

/// How to set up an inference engine (`task::infer::Engine`).
#[derive(Debug, Clone, Default)]
pub struct EngineOptions {
    /// Which engine.
    pub choice: EngineChoice,
    /// Intra-op threads per inference (onnxruntime; tract runs on one).
    /// 0 means 1.
    pub threads: usize,
    /// onnxruntime's library, as the user named it (`None`: look it up).
    pub onnxruntime_lib: Option<PathBuf>,
}

/// The engine an `Engine` runs models with first, as the node says at
/// start, in `status` and in its `--json` start line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineInfo {
    /// The engine.
    pub kind: EngineKind,
    /// Its version.
    pub version: String,
    /// Where onnxruntime came from, or why it is not used (auto only).
    pub note: Option<String>,
}

impl std::fmt::Display for EngineInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.kind, self.version)?;
        match &self.note {
            Some(n) => write!(f, " ({n})"),
            None => Ok(()),
        }
    }
}
