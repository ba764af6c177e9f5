//! `p2pa model`: the content-addressed model store on this machine, and
//! reading a model named by hash or file.

use std::path::Path;

use p2pa_node::core::DEFAULT_MODEL_CACHE_BYTES;

use crate::node::MIB;
use crate::{exit, CliError, CliResult, ModelCmd};

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

pub fn cmd_model(dir: &Path, m: &ModelCmd) -> CliResult {
    let store = store(dir, limit_mib());
    match m {
        ModelCmd::Add { file } => {
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
