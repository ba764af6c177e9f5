//! How a node runs models: in child processes of this binary (`p2pa
//! infer-child`), each with its memory, CPU-time and (with
//! `--max-cpu-percent`) CPU-share limits, so a model that crashes or
//! overruns takes down only its own process.

use std::path::Path;

use crate::{CliError, CliResult};

#[cfg(all(feature = "onnx", unix))]
use crate::units::MIB;

/// The executor and what it says of its engine, for the start line.
type Started = (p2pa_node::task::Executor, Option<String>);

/// Runs `infer` tasks in child processes of this binary (`p2pa infer-child`),
/// so that a model that crashes or overruns takes down only its own process.
/// One child starts now: it says which engine runs (or, with `--engine
/// onnxruntime` where the library does not load, why the node cannot start).
#[cfg(all(feature = "onnx", unix))]
pub(crate) fn executor(
    store: &p2pa_node::models::ModelStore,
    memory_mib: u64,
    nice: u8,
    cpu_cores: Option<f64>,
    engine: &crate::engine::EngineArgs,
    max_output: u64,
) -> Result<Started, CliError> {
    use p2pa_node::task::child::{ChildCommand, Isolated};
    let max_output = usize::try_from(max_output).unwrap_or(usize::MAX);
    let (opts, source) = engine.resolved();
    let program = match std::env::current_exe() {
        Ok(program) => program,
        Err(e) => {
            log::warn!("cannot find this program ({e}); models run inside the node process");
            return Ok((p2pa_node::task::executor(Some(store.clone())), None));
        }
    };
    let mut args: Vec<std::ffi::OsString> = vec![
        "infer-child".into(),
        "--models".into(),
        store.dir().into(),
        "--memory-mb".into(),
        memory_mib.to_string().into(),
        "--max-output-bytes".into(),
        max_output.to_string().into(),
        "--nice".into(),
        nice.to_string().into(),
    ];
    args.extend(crate::engine::EngineArgs::child_args(&opts));
    let (executor, info) = Isolated::start(ChildCommand {
        program,
        args,
        max_output,
        cpu_cores,
    })
    .map_err(|e| CliError::usage(format!("cannot start the inference engine: {e}")))?;
    // The child was handed the path, so its own note says "as named":
    // the start line says where the node found it instead.
    let line = match (info.kind, source, &opts.onnxruntime_lib) {
        (p2pa_node::task::engine::EngineKind::Onnxruntime, Some(src), Some(lib)) => {
            format!("{} {} ({} {src})", info.kind, info.version, lib.display())
        }
        _ => info.to_string(),
    };
    Ok((std::sync::Arc::new(executor), Some(line)))
}

#[cfg(not(all(feature = "onnx", unix)))]
pub(crate) fn executor(
    store: &p2pa_node::models::ModelStore,
    _memory_mib: u64,
    _nice: u8,
    _cpu_cores: Option<f64>,
    _engine: &crate::engine::EngineArgs,
    _max_output: u64,
) -> Result<Started, CliError> {
    Ok((p2pa_node::task::executor(Some(store.clone())), None))
}

/// `p2pa infer-child`: what a node starts to run models in (not for people).
#[cfg(all(feature = "onnx", unix))]
pub fn cmd_infer_child(
    models: &Path,
    memory_mib: u64,
    max_output: usize,
    nice: u8,
    engine: &p2pa_node::task::engine::EngineOptions,
) -> CliResult {
    // One thread now: its niceness is the whole process's, and the
    // engine's threads inherit it.
    if let Err(e) = p2pa_node::task::lower_priority(nice) {
        eprintln!("warning: cannot lower this process's priority to nice {nice}: {e}");
    }
    let store = p2pa_node::models::ModelStore::new(models, u64::MAX);
    p2pa_node::task::child::serve(store, memory_mib.saturating_mul(MIB), engine, max_output)
        .map(|()| crate::exit::OK)
        .map_err(|e| CliError::usage(format!("inference child: {e}")))
}

#[cfg(not(all(feature = "onnx", unix)))]
pub fn cmd_infer_child(
    _: &Path,
    _: u64,
    _: usize,
    _: u8,
    _: &p2pa_node::task::engine::EngineOptions,
) -> CliResult {
    Err(CliError::usage(
        "this p2pa was built without the `onnx` feature",
    ))
}

/// `--max-cpu-percent` as cores' worth of CPU, where this build can keep
/// to it.
pub(crate) fn cpu_limit(percent: Option<u8>, cores: usize) -> Result<Option<f64>, CliError> {
    let Some(percent) = percent else {
        return Ok(None);
    };
    if !p2pa_node::task::throttle::SUPPORTED || !cfg!(all(feature = "onnx", unix)) {
        return Err(CliError::usage(
            "--max-cpu-percent needs Linux and a build with models (feature onnx)",
        ));
    }
    Ok(Some(f64::from(percent) / 100.0 * cores as f64))
}
