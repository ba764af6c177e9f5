//! The optional `<data-dir>/p2pa.toml`: each key becomes the `P2PA_*`
//! environment variable of the same name unless that is set already, so the
//! order of precedence is flags, then environment, then file.

use std::path::PathBuf;

/// Settings the file may hold, each the name of a flag.
const KEYS: &[&str] = &[
    "listen",
    "bootstrap",
    "workers",
    "trust",
    "allowlist",
    "multicast_ttl",
    "multicast_port",
    "multicast_group",
    "interface",
    "no_mdns",
    "use_identity",
    "network_key",
    "cipher",
    "quiet_beacons",
];

/// The data directory as the command line will see it (flag, env, default).
fn data_dir_from_args() -> PathBuf {
    let args: Vec<String> = std::env::args().collect();
    let flag = args.iter().enumerate().find_map(|(i, a)| {
        a.strip_prefix("--data-dir=")
            .map(str::to_owned)
            .or_else(|| {
                (a == "--data-dir")
                    .then(|| args.get(i + 1).cloned())
                    .flatten()
            })
    });
    let from_env = std::env::var_os("P2PA_DATA_DIR").map(PathBuf::from);
    crate::data_dir(flag.map(PathBuf::from).or(from_env).as_ref())
}

/// Reads `p2pa.toml` (if any) into the environment.
pub fn load_into_env() -> Result<(), String> {
    let path = data_dir_from_args().join("p2pa.toml");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(());
    };
    let table: toml::Table = text
        .parse()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    for (key, value) in table {
        if !KEYS.contains(&key.as_str()) {
            return Err(format!(
                "{}: unknown setting `{key}` (known: {})",
                path.display(),
                KEYS.join(", ")
            ));
        }
        let text = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Array(items) => {
                let strings: Option<Vec<&str>> = items.iter().map(toml::Value::as_str).collect();
                strings
                    .ok_or_else(|| {
                        format!("{}: `{key}` must be a list of strings", path.display())
                    })?
                    .join(",")
            }
            other => {
                return Err(format!(
                    "{}: `{key}` cannot be {}",
                    path.display(),
                    other.type_str()
                ))
            }
        };
        let var = format!("P2PA_{}", key.to_uppercase());
        if std::env::var_os(&var).is_none() {
            // Single-threaded here: nothing else reads the environment yet.
            set_env(&var, &text);
        }
    }
    Ok(())
}

fn set_env(var: &str, value: &str) {
    // Edition 2021 keeps `set_var` safe; it runs before any thread starts.
    std::env::set_var(var, value);
}
