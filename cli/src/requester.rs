//! The requester commands' common part: an in-process requester node
//! (`peers`, `submit`, `batch` and `demo` use it), `p2pa peers` and
//! `p2pa submit`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use p2pa_node::core::{PeerState, TaskRequest};
use p2pa_node::identity;
use p2pa_node::io::{LocalNode, NodeHandle, NodeOptions};
use p2pa_node::protocol::{Keypair, KindSet, TaskKind, TaskStatus};

use crate::{exit, output, parse_kind, tensors, CliError, CliResult, NetArgs};

/// An in-process requester node with no worker slots: a fresh key, or this
/// machine's (from `data_dir`) with `--use-identity`. With `peer`, it dials
/// only that address and sends no beacons. It runs on the calling thread,
/// inside the returned [`LocalNode::block_on`].
pub fn requester(
    net: &NetArgs,
    peer: Option<SocketAddr>,
    data_dir: &std::path::Path,
) -> Result<(NodeHandle, LocalNode), CliError> {
    let peers: Vec<SocketAddr> = peer.into_iter().collect();
    let (key, opts) = requester_options(net, &peers, data_dir)?;
    NodeHandle::start_local(key, opts).map_err(|e| CliError::network(format!("cannot start: {e}")))
}

/// The key and options of a requester node: no worker slots, the key of
/// `--use-identity` or a fresh one; with `peers`, it dials only those
/// addresses and sends no beacons, else it discovers as `net` says.
pub fn requester_options(
    net: &NetArgs,
    peers: &[SocketAddr],
    data_dir: &std::path::Path,
) -> Result<(Keypair, NodeOptions), CliError> {
    let key = if net.use_identity {
        let path = data_dir.join(identity::KEY_FILE);
        if !path.exists() {
            return Err(CliError::usage(format!(
                "--use-identity: no key at {} (make one with `p2pa keygen`; `p2pa id` prints the id to put on workers' allowlists)",
                path.display()
            )));
        }
        identity::load(&path).map_err(|e| CliError::usage(e.to_string()))?
    } else {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed)
            .map_err(|e| CliError::network(format!("no OS randomness: {e}")))?;
        Keypair::try_from_seed(seed)
            .ok_or_else(|| CliError::network("the OS random source gave an all-zero key"))?
    };
    let loopback = !peers.is_empty() && peers.iter().all(|p| p.ip().is_loopback());
    let listen_ip = if net.host_local() || loopback {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    };
    let mut opts = NodeOptions::new(SocketAddr::new(listen_ip, 0));
    opts.core.network_key = net.network_key()?;
    opts.core.aes_gcm = net.aes_gcm();
    opts.core.kinds = KindSet::default();
    opts.core.workers = 0;
    if peers.is_empty() {
        opts.multicast = Some(net.multicast());
        opts.mdns = net.mdns();
    } else {
        opts.multicast = None;
        opts.mdns = false;
        opts.core.bootstrap = peers.to_vec();
    }
    Ok((key, opts))
}

pub fn cmd_peers(net: &NetArgs, dir: &std::path::Path, wait: u64, json: bool) -> CliResult {
    let (h, mut node) = requester(net, None, dir)?;
    node.block_on(async {
        let peers = h
            .wait_for_peers(None, usize::MAX, Duration::from_millis(wait))
            .await;
        if json {
            for p in &peers {
                output::json_line(&output::peer_json(p));
            }
        } else if peers.is_empty() {
            eprintln!("no peers found in {wait} ms (is a node running? `p2pa node`; on another subnet use --bootstrap)");
        } else {
            output::print_peer_table(&peers);
        }
        h.shutdown().await;
        if peers.is_empty() {
            Err(CliError::network("no peers found"))
        } else {
            Ok(exit::OK)
        }
    })
}

#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// Task kind: echo, hash (SHA-256 hex), sleep (input: milliseconds), infer (needs --model)
    #[arg(long, value_parser = parse_kind)]
    kind: TaskKind,
    /// Model for infer: a hash from `p2pa model add`, or an .onnx file; workers
    /// without it fetch it from this requester
    #[arg(long, value_name = "HASH|FILE")]
    model: Option<String>,
    /// Input text; for infer, JSON: [x, …] (one row), [[…], …] (rows) or
    /// {"shape": [..], "f32": [..]} (also f64 f16 i64 i32 u8 bool; a list of
    /// such objects, each with a "name", for several inputs)
    #[arg(
        long,
        conflicts_with = "input_file",
        required_unless_present = "input_file"
    )]
    input: Option<String>,
    /// Read the input from a file: any bytes; for infer a .npy (one input),
    /// .npz (named inputs, as numpy.savez writes) or .json file
    #[arg(long, value_name = "PATH")]
    input_file: Option<PathBuf>,
    /// infer: write each output tensor as `DIR/<output name>.npy` (and print
    /// their paths) instead of JSON on stdout
    #[arg(long, value_name = "DIR")]
    out_dir: Option<PathBuf>,
    /// Send to this node only (its TCP address) instead of discovering one
    #[arg(long, value_name = "HOST:PORT", value_parser = crate::parse_host_port)]
    peer: Option<SocketAddr>,
    /// Seconds for the whole task, retries included
    #[arg(long, default_value_t = 30, value_name = "S")]
    timeout: u64,
    /// Milliseconds to look for a worker before giving up
    #[arg(long, default_value_t = 3000, value_name = "MS")]
    wait: u64,
    /// Print one JSON object: task_id, status, worker, output (UTF-8 text; binary
    /// output goes in output_hex instead), elapsed_ms, attempts, receipt
    #[arg(long)]
    json: bool,
    /// infer: use only a worker that runs models on this engine
    #[arg(long, value_enum, value_name = "ENGINE")]
    engine: Option<crate::engine::WorkerEngine>,
}

pub fn cmd_submit(net: &NetArgs, data_dir: &std::path::Path, a: &SubmitArgs) -> CliResult {
    let model = match (&a.model, a.kind) {
        (Some(m), _) => Some(crate::models::load(data_dir, m)?),
        (None, TaskKind::Infer) => {
            return Err(CliError::usage("an infer task needs --model HASH|FILE"))
        }
        (None, _) => None,
    };
    let input = match (a.kind, &a.input, &a.input_file) {
        (TaskKind::Infer, text, file) => {
            let set = match (text, file) {
                (Some(t), _) => {
                    let v: serde_json::Value = serde_json::from_str(t).map_err(|e| {
                        CliError::usage(format!(
                            "infer input must be JSON (numbers, rows, or a tensor object): {e}"
                        ))
                    })?;
                    tensors::tensors_from_json(&v)
                        .map_err(|e| CliError::usage(format!("infer input: {e}")))?
                }
                (None, Some(p)) => tensors::read_file(p).map_err(CliError::usage)?,
                (None, None) => {
                    return Err(CliError::usage("give --input JSON or --input-file PATH"))
                }
            };
            if let (Some(bytes), Some(what)) = (&model, &a.model) {
                crate::models::ModelCheck::new(bytes, what)?.check(&set)?;
            }
            p2pa_node::task::tensor::encode(&set)
        }
        (_, Some(t), _) => t.clone().into_bytes(),
        (_, None, Some(p)) => std::fs::read(p)
            .map_err(|e| CliError::usage(format!("cannot read input file {}: {e}", p.display())))?,
        (_, None, None) => return Err(CliError::usage("give --input TEXT or --input-file PATH")),
    };
    let (h, mut node) = requester(net, a.peer, data_dir)?;
    node.block_on(async {
        let model_hash = provide(&h, model).await?;
        let result = submit_one(&h, a, input, model_hash).await;
        h.shutdown().await;
        result
    })
}

/// Serves `model` (if any) to workers from the requester `h`; returns its hash.
pub async fn provide(h: &NodeHandle, model: Option<Vec<u8>>) -> Result<Option<[u8; 32]>, CliError> {
    match model {
        Some(bytes) => h
            .provide_model(bytes)
            .await
            .map(Some)
            .map_err(|e| CliError::network(e.to_string())),
        None => Ok(None),
    }
}

async fn submit_one(
    h: &NodeHandle,
    a: &SubmitArgs,
    input: Vec<u8>,
    model: Option<[u8; 32]>,
) -> CliResult {
    let needs = crate::engine::needs(a.engine);
    let peers = h
        .wait_for_workers(Some(a.kind), needs, 1, Duration::from_millis(a.wait))
        .await;
    if peers.is_empty() {
        let on = a
            .engine
            .map(|e| format!(" on {}", e.name()))
            .unwrap_or_default();
        let paused = h
            .peers()
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|p| p.state != PeerState::Known && p.caps.kinds.has_flags(KindSet::PAUSED))
            .filter(|p| a.peer.is_none_or(|want| p.addr == Some(want)))
            .count();
        let hint = match a.peer {
            Some(p) if paused > 0 => format!(
                "the node at {p} is paused: it takes no new tasks until its owner runs `p2pa resume`"
            ),
            None if paused > 0 => format!(
                "no peers that run `{}`{on} take tasks now: {paused} found are paused (`p2pa resume` on them), pass --peer HOST:PORT for another",
                a.kind
            ),
            Some(p) => format!(
                "could not reach a node at {p} that runs `{}`{on} (is it running there, and does it use a network key? then pass the same --network-key)",
                a.kind
            ),
            None => format!(
                "no peers found that run `{}`{on} within {} ms; start one with `p2pa node`, or pass --peer HOST:PORT",
                a.kind, a.wait
            ),
        };
        return Err(CliError::network(hint));
    }
    let req = TaskRequest {
        kind: a.kind,
        input: input.into(),
        model,
        timeout: Duration::from_secs(a.timeout),
        peer: None,
        needs,
    };
    let outcome = h
        .submit(req)
        .await
        .map_err(|e| CliError::network(e.to_string()))?;
    let infer = a.kind == TaskKind::Infer;
    if let (true, Some(dir), TaskStatus::Completed) = (infer, &a.out_dir, outcome.status) {
        let files = tensors::write_npy_dir(&outcome.output, dir).map_err(CliError::usage)?;
        let mut summary = output::outcome_json(&outcome, output::Body::Omit);
        summary["files"] = serde_json::json!(files);
        if a.json {
            output::json_line(&summary);
        } else {
            output::print_outcome_header(&outcome);
            for f in files {
                say!("{}", f.display());
            }
        }
        return Ok(exit::OK);
    }
    if a.json {
        output::json_line(&output::outcome_json(&outcome, output::Body::of(infer)));
    } else {
        output::print_outcome(&outcome, infer);
    }
    Ok(if outcome.status == TaskStatus::Completed {
        exit::OK
    } else {
        exit::TASK_FAILED
    })
}
