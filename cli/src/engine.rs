//! The engine flags that `node`, `model run` and the inference child share:
//! which engine, how many threads per inference, where onnxruntime is.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use p2pa_node::task::engine::{EngineChoice, EngineKind, EngineOptions};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EngineArg {
    /// onnxruntime where its library loads, else tract; a model onnxruntime refuses runs on tract
    Auto,
    /// Only onnxruntime (fails at start where its library does not load)
    Onnxruntime,
    /// Only tract (pure Rust, in every build)
    Tract,
}

impl EngineArg {
    pub fn choice(self) -> EngineChoice {
        match self {
            Self::Auto => EngineChoice::Auto,
            Self::Onnxruntime => EngineChoice::Only(EngineKind::Onnxruntime),
            Self::Tract => EngineChoice::Only(EngineKind::Tract),
        }
    }
}

/// The engine a requester asks for (`--engine` on submit and batch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WorkerEngine {
    /// Only workers whose models run on onnxruntime
    Onnxruntime,
    /// Only workers whose models run on tract
    Tract,
}

impl WorkerEngine {
    pub fn name(self) -> &'static str {
        match self {
            Self::Onnxruntime => "onnxruntime",
            Self::Tract => "tract",
        }
    }
}

/// The capability flag of an engine, as workers advertise it.
pub fn flag(kind: EngineKind) -> u8 {
    match kind {
        EngineKind::Onnxruntime => p2pa_node::protocol::KindSet::ONNXRUNTIME,
        EngineKind::Tract => p2pa_node::protocol::KindSet::TRACT,
    }
}

/// The flags a requester's `--engine` needs (0: any worker).
pub fn needs(engine: Option<WorkerEngine>) -> u8 {
    match engine {
        None => 0,
        Some(WorkerEngine::Onnxruntime) => flag(EngineKind::Onnxruntime),
        Some(WorkerEngine::Tract) => flag(EngineKind::Tract),
    }
}

#[derive(Debug, Clone, Args)]
pub struct EngineArgs {
    /// Inference engine
    #[arg(long, value_enum, default_value_t = EngineArg::Auto, env = "P2PA_ENGINE")]
    pub engine: EngineArg,
    /// Threads per inference (onnxruntime's intra-op threads; tract runs on
    /// one). The default, 1, with one slot per core never oversubscribes
    #[arg(long, default_value_t = 1, value_name = "N", env = "P2PA_ENGINE_THREADS",
          value_parser = clap::value_parser!(u16).range(1..))]
    pub engine_threads: u16,
    /// onnxruntime's shared library [default: ORT_DYLIB_PATH, else the
    /// onnxruntime Python package of python3, else the system's libonnxruntime.so]
    #[arg(long, value_name = "PATH", env = "P2PA_ONNXRUNTIME_LIB")]
    pub onnxruntime_lib: Option<PathBuf>,
}

impl EngineArgs {
    /// The options as given.
    pub fn options(&self) -> EngineOptions {
        EngineOptions {
            choice: self.engine.choice(),
            threads: usize::from(self.engine_threads),
            onnxruntime_lib: self.onnxruntime_lib.clone(),
        }
    }

    /// The options with onnxruntime's library looked up now, once (the
    /// inference children get the path), and where it was found.
    pub fn resolved(&self) -> (EngineOptions, Option<&'static str>) {
        let opts = self.options();
        #[cfg(feature = "onnxruntime")]
        if opts.choice != EngineChoice::Only(EngineKind::Tract) {
            let (lib, source) =
                p2pa_node::task::infer::locate::find(opts.onnxruntime_lib.as_deref());
            let opts = EngineOptions {
                onnxruntime_lib: Some(lib),
                ..opts
            };
            return (opts, Some(source.describe()));
        }
        (opts, None)
    }

    /// Arguments that give a child process these options.
    pub fn child_args(opts: &EngineOptions) -> Vec<std::ffi::OsString> {
        let mut args: Vec<std::ffi::OsString> = vec![
            "--engine".into(),
            opts.choice.name().into(),
            "--engine-threads".into(),
            opts.threads.max(1).to_string().into(),
        ];
        if let Some(lib) = &opts.onnxruntime_lib {
            args.push("--onnxruntime-lib".into());
            args.push(lib.into());
        }
        args
    }
}
