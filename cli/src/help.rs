//! `--help` of the commands that talk to no peer, built from that command
//! alone (clap copies every global option into every command's help).

use crate::args::Cli;

/// Commands that talk to no peer: their `--help` shows their own options
/// (and `--data-dir` where they use it), not the network options. (clap
/// copies every global option into every command's help.)
const LOCAL_COMMANDS: [&str; 6] = ["keygen", "id", "status", "verify", "model", "demo"];
/// The local commands that read the data directory.
const DATA_DIR_COMMANDS: [&str; 4] = ["keygen", "id", "status", "model"];

/// Global options that take a value (to find the command after them).
const GLOBAL_VALUES: [&str; 5] = [
    "--data-dir",
    "--multicast-ttl",
    "--multicast-port",
    "--multicast-group",
    "--interface",
];

/// The words of `args` that are neither options nor a global option's
/// value, with where they are.
fn words(args: &[String]) -> Vec<(usize, &String)> {
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(a) = args.get(i) {
        if !a.starts_with('-') {
            out.push((i, a));
        }
        i += if GLOBAL_VALUES.contains(&a.as_str()) {
            2
        } else {
            1
        };
    }
    out
}

/// The help of a local command when the arguments ask for it, built from
/// that command alone.
pub(crate) fn local_help(args: &[String]) -> Option<String> {
    use clap::CommandFactory;
    // `p2pa help demo` asks what `p2pa demo --help` does.
    let words = words(args);
    if let Some(&(at, _)) = words.first().filter(|(_, w)| *w == "help") {
        let mut asked: Vec<String> = args.iter().skip(at + 1).cloned().collect();
        if asked.is_empty() {
            return None;
        }
        asked.push("--help".into());
        return local_help(&asked);
    }
    if !args.iter().any(|a| a == "-h" || a == "--help") {
        return None;
    }
    let mut cmd = Cli::command();
    let mut path: Vec<String> = Vec::new();
    for (_, a) in words {
        match cmd.find_subcommand(a) {
            Some(sub) => {
                let sub = sub.clone();
                path.push(a.clone());
                cmd = sub;
            }
            None => break,
        }
    }
    let first = path.first()?;
    if !LOCAL_COMMANDS.contains(&first.as_str()) {
        return None;
    }
    let mut cmd = cmd.bin_name(format!("p2pa {}", path.join(" ")));
    if DATA_DIR_COMMANDS.contains(&first.as_str()) {
        let root = Cli::command();
        let data_dir = root
            .get_arguments()
            .find(|a| a.get_id() == "data_dir")
            .cloned();
        if let Some(data_dir) = data_dir {
            cmd = cmd.arg(data_dir.global(false));
        }
    }
    Some(cmd.render_help().to_string())
}
