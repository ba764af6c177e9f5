//! `p2pa keygen` and `p2pa id`: the node's key and a network key.

use std::path::Path;

use p2pa_node::identity;

use crate::error::{exit, CliError, CliResult};

/// The OS random source, or a clear error when it does not work.
pub fn os_entropy() -> Result<p2pa_node::io::OsEntropy, CliError> {
    p2pa_node::io::OsEntropy::new().map_err(|e| CliError::failed(e.to_string()))
}

pub(crate) fn cmd_keygen(dir: &Path, force: bool) -> CliResult {
    let key = identity::create(dir, &mut os_entropy()?, force)
        .map_err(|e| CliError::usage(e.to_string()))?;
    say!("{}", key.node_id());
    eprintln!("new key in {}", dir.join(identity::KEY_FILE).display());
    Ok(exit::OK)
}

pub(crate) fn cmd_keygen_network(file: &Path, force: bool) -> CliResult {
    identity::create_network_key(file, &mut os_entropy()?, force)
        .map_err(|e| CliError::usage(e.to_string()))?;
    eprintln!(
        "new network key in {}: copy it to every machine of this network and run their nodes, \
         and `p2pa submit`/`batch`, with --network-key {}",
        file.display(),
        file.display()
    );
    Ok(exit::OK)
}

pub(crate) fn cmd_id(dir: &Path) -> CliResult {
    let path = dir.join(identity::KEY_FILE);
    if !path.exists() {
        return Err(CliError::usage(format!(
            "no key at {} yet: make one with `p2pa keygen` (or start `p2pa node`, which makes it)",
            path.display()
        )));
    }
    let key = identity::load(&path).map_err(|e| CliError::usage(e.to_string()))?;
    let id = key.node_id();
    say!("{}  {}", id.short(), id);
    Ok(exit::OK)
}
