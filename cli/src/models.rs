//! `p2pa model`: the content-addressed model store on this machine, and
//! reading a model named by hash or file.

use std::path::{Path, PathBuf};

use clap::Subcommand;
use p2pa_node::core::DEFAULT_MODEL_CACHE_BYTES;

use crate::units::MIB;
use crate::{engine, exit, CliError, CliResult};

pub fn store(dir: &Path, mib: u64) -> p2pa_node::models::ModelStore {
    p2pa_node::models::ModelStore::new(dir.join("models"), mib.saturating_mul(MIB))
}

/// A model's bytes, from the store (by hash) or from a file.
pub fn load(data_dir: &Path, spec: &str) -> Result<Vec<u8>, CliError> {
    if let Some(hash) = p2pa_node::hex::parse_hex32(spec) {
        return store(data_dir, limit_mib())
            .read(&hash)
            .map_err(|e| CliError::usage(format!("{e}; add it with `p2pa model add FILE`")));
    }
    std::fs::read(spec).map_err(|e| {
        CliError::usage(format!(
            "cannot read model {spec}: {e} (give a file or a hash from `p2pa model list`)"
        ))
    })
}

#[derive(Debug, Subcommand)]
pub enum ModelCmd {
    /// Copy an ONNX model into the store and print its hash (tasks name models by hash)
    Add {
        /// The .onnx file
        file: PathBuf,
    },
    /// List the models in the store
    List,
    /// Show a model's inputs: names, dtypes and shapes (N: any size)
    Info {
        /// A hash from `p2pa model list`, or an .onnx file
        #[arg(value_name = "HASH|FILE")]
        model: String,
    },
    /// Run a model here, without the network (what a worker would compute),
    /// and print the outputs and the time per inference
    Run {
        /// A hash from `p2pa model list`, or an .onnx file
        #[arg(value_name = "HASH|FILE")]
        model: String,
        /// Input tensors: .npy (one input), .npz (named inputs) or .json
        #[arg(long, value_name = "PATH")]
        input_file: PathBuf,
        /// Write each output as `DIR/<output name>.npy` instead of printing JSON
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
        /// Run it this many times and report the median time
        #[arg(long, default_value_t = 1, value_name = "N")]
        repeat: u32,
        /// Print one JSON object (engine, engine_version, first_ms,
        /// median_ms, repeat) on stdout instead of the outputs
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        engine: engine::EngineArgs,
    },
}

pub fn cmd_model(dir: &Path, m: &ModelCmd) -> CliResult {
    let store = store(dir, limit_mib());
    match m {
        ModelCmd::Add { file } => {
            #[cfg(feature = "onnx")]
            {
                let bytes = std::fs::read(file)
                    .map_err(|e| CliError::usage(format!("cannot read {}: {e}", file.display())))?;
                inputs_of(&bytes, &file.display().to_string())?;
            }
            let hash = store
                .add_file(file)
                .map_err(|e| CliError::usage(e.to_string()))?;
            say!("{}", p2pa_node::hex::hex(&hash));
            eprintln!("stored in {}", store.path(&hash).display());
        }
        ModelCmd::List => {
            for (hash, len) in store.list() {
                say!("{}  {len} bytes", p2pa_node::hex::hex(&hash));
            }
        }
        #[cfg(feature = "onnx")]
        ModelCmd::Info { model } => return cmd_info(dir, model),
        #[cfg(feature = "onnx")]
        ModelCmd::Run {
            model,
            input_file,
            out_dir,
            repeat,
            json,
            engine,
        } => {
            return cmd_run(
                dir,
                model,
                Run {
                    input: input_file,
                    out_dir: out_dir.as_deref(),
                    repeat: *repeat,
                    json: *json,
                    engine,
                },
            )
        }
        #[cfg(not(feature = "onnx"))]
        ModelCmd::Info { .. } | ModelCmd::Run { .. } => {
            return Err(CliError::usage(
                "this p2pa was built without the `onnx` feature and cannot read models",
            ))
        }
    }
    Ok(exit::OK)
}

/// The cache limit (`P2PA_MODEL_CACHE_MB`, else the node's default).
fn limit_mib() -> u64 {
    std::env::var("P2PA_MODEL_CACHE_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_MODEL_CACHE_BYTES / MIB)
}

/// What `model add` and the checks before sending know about a model.
#[cfg(feature = "onnx")]
pub fn inputs_of(
    bytes: &[u8],
    what: &str,
) -> Result<Vec<p2pa_node::task::infer::InputSpec>, CliError> {
    p2pa_node::task::infer::model_inputs(bytes)
        .map_err(|e| CliError::usage(format!("{what} is not an ONNX model p2pa can read: {e:#}")))
}

#[cfg(feature = "onnx")]
fn cmd_info(data_dir: &Path, spec: &str) -> CliResult {
    for i in inputs_of(&load(data_dir, spec)?, spec)? {
        let dtype = i.dtype.map_or("?", |d| d.name());
        say!("input {:?}: {dtype} {}", i.name, i.shape);
    }
    Ok(exit::OK)
}

/// What `model run` was asked to do.
#[cfg(feature = "onnx")]
struct Run<'a> {
    input: &'a Path,
    out_dir: Option<&'a Path>,
    repeat: u32,
    json: bool,
    engine: &'a crate::engine::EngineArgs,
}

#[cfg(feature = "onnx")]
fn cmd_run(data_dir: &Path, spec: &str, run: Run<'_>) -> CliResult {
    use p2pa_node::protocol::TaskStatus;
    let Run {
        input,
        out_dir,
        repeat,
        json,
        engine,
    } = run;
    let bytes = load(data_dir, spec)?;
    let tensors = crate::tensors::read_file(input).map_err(CliError::usage)?;
    let (opts, _) = engine.resolved();
    let engine = p2pa_node::task::infer::Engine::new_in_memory(&opts)
        .map_err(|e| CliError::usage(format!("cannot start the inference engine: {e}")))?;
    let hash = engine
        .hold(&bytes)
        .map_err(|e| CliError::usage(format!("{spec} is not an ONNX model p2pa can read: {e}")))?;
    let info = engine.info();
    let kind = engine.engine_of(&hash).unwrap_or(info.kind);
    let version = if kind == info.kind {
        info.version.clone()
    } else {
        p2pa_node::task::infer::tract::VERSION.to_owned()
    };
    ModelCheck {
        specs: engine.inputs(&hash).unwrap_or_default(),
        what: spec.to_owned(),
    }
    .check(&tensors)?;
    let input = p2pa_node::task::tensor::encode(&tensors);
    let mut times: Vec<f64> = Vec::new();
    let mut ran = None;
    for _ in 0..repeat.max(1) {
        let t = std::time::Instant::now();
        ran = Some(engine.run(Some(hash), &input));
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let (status, out) = ran.map_or((TaskStatus::Failed, Vec::new()), |r| (r.status, r.output));
    if status != TaskStatus::Completed {
        eprintln!("error: {}", String::from_utf8_lossy(&out));
        return Ok(exit::TASK_FAILED);
    }
    // The first run also optimises for these shapes; the median is over
    // the others (as a warmed-up onnxruntime session is timed).
    let first = times.first().copied().unwrap_or(0.0);
    if times.len() > 1 {
        times.remove(0);
    }
    times.sort_by(f64::total_cmp);
    let median = p2pa_node::measure::percentile(&times, 0.5);
    eprintln!(
        "{} run(s) on {kind} {version}: first {first:.1} ms (optimises for these shapes), median {median:.1} ms",
        repeat.max(1)
    );
    if json {
        say!(
            "{}",
            serde_json::json!({
                "engine": kind.name(), "engine_version": version,
                "first_ms": first, "median_ms": median, "repeat": repeat.max(1),
            })
        );
        if let Some(dir) = out_dir {
            crate::tensors::write_npy_dir(&out, dir).map_err(CliError::usage)?;
        }
        return Ok(exit::OK);
    }
    print_outputs(&out, out_dir)
}

/// Prints outputs as JSON, or writes them as .npy files into `out_dir`.
#[cfg(feature = "onnx")]
fn print_outputs(output: &[u8], out_dir: Option<&Path>) -> CliResult {
    match out_dir {
        Some(dir) => {
            for p in crate::tensors::write_npy_dir(output, dir).map_err(CliError::usage)? {
                say!("{}", p.display());
            }
        }
        None => {
            if let Some((v, _)) = crate::tensors::to_json(output) {
                say!("{v}");
            }
        }
    }
    Ok(exit::OK)
}

/// A model's declared inputs, read once, to check every input against
/// before anything is sent: names, dtypes and shapes; a mismatch is a usage
/// error (exit 2) with both shapes. Without `onnx` it checks nothing.
#[derive(Debug)]
pub struct ModelCheck {
    #[cfg(feature = "onnx")]
    specs: Vec<p2pa_node::task::infer::InputSpec>,
    what: String,
}

impl ModelCheck {
    /// Reads the inputs of the model in `bytes` (named `what` in messages).
    pub fn new(bytes: &[u8], what: &str) -> Result<Self, CliError> {
        #[cfg(not(feature = "onnx"))]
        let _ = bytes;
        Ok(Self {
            #[cfg(feature = "onnx")]
            specs: inputs_of(bytes, what)?,
            what: what.to_owned(),
        })
    }

    /// Why lines cannot stack along axis 0 (`--batch-size`): an input whose
    /// first dimension the model fixes, named with its shape.
    pub fn fixed_batch(&self) -> Option<String> {
        #[cfg(feature = "onnx")]
        {
            let what = &self.what;
            self.specs
                .iter()
                .find(|i| i.shape.0.first().is_some_and(Option::is_some))
                .map(|i| {
                    format!(
                        "model {what} fixes the first dimension of input {:?} ({})",
                        i.name, i.shape
                    )
                })
        }
        #[cfg(not(feature = "onnx"))]
        None
    }

    /// Checks one input set.
    pub fn check(&self, tensors: &[p2pa_node::task::tensor::Tensor]) -> Result<(), CliError> {
        #[cfg(feature = "onnx")]
        {
            let what = &self.what;
            p2pa_node::task::infer::check(&self.specs, tensors)
                .map_err(|e| CliError::usage(format!("input does not fit model {what}: {e}")))
        }
        #[cfg(not(feature = "onnx"))]
        {
            let _ = (tensors, &self.what);
            Ok(())
        }
    }
}
