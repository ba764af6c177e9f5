//! The pool as Python sees it: one requester node on its own thread
//! (discovery, sessions, retries: the node `p2pa batch` runs), shared by
//! every session and thread of a `p2pa.Pool`.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use p2pa_cli::engine::WorkerEngine;
use p2pa_cli::NetArgs;
use p2pa_node::core::TaskRequest;
use p2pa_node::io::NodeHandle;
use p2pa_node::protocol::TaskKind;
use pyo3::prelude::*;

use crate::batch::{Batch, Pool, Spec};
use crate::model::Model;
use crate::outcome::{seconds, Outcome};
use crate::{py_err, wait, Error, InputError, NoPeersError};

/// A task's kind by name.
pub fn kind_of(name: &str) -> PyResult<TaskKind> {
    p2pa_cli::parse_kind(name).map_err(InputError::new_err)
}

/// An engine name as the capability a worker must advertise.
pub fn engine_of(name: Option<&str>) -> PyResult<Option<WorkerEngine>> {
    match name {
        None => Ok(None),
        Some("onnxruntime") => Ok(Some(WorkerEngine::Onnxruntime)),
        Some("tract") => Ok(Some(WorkerEngine::Tract)),
        Some(other) => Err(InputError::new_err(format!(
            "unknown engine {other:?} (known: onnxruntime, tract)"
        ))),
    }
}

/// A requester node: no worker slots, a fresh key unless `use_identity`.
#[pyclass(frozen, module = "p2pa._native")]
pub struct Node {
    pub handle: Arc<NodeHandle>,
    closed: AtomicBool,
    /// Models already offered to workers.
    provided: Mutex<BTreeSet<[u8; 32]>>,
    /// Whether it dials given peers only (for the "no peers" hint).
    peers: Vec<SocketAddr>,
}

impl Pool for Node {
    /// The handle, unless the node was closed.
    fn live(&self) -> PyResult<&Arc<NodeHandle>> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::new_err("this pool is closed"));
        }
        Ok(&self.handle)
    }

    /// Offers `model` to workers (once per node).
    fn offer(&self, py: Python<'_>, model: &Model) -> PyResult<()> {
        let h = self.live()?;
        let fresh = self
            .provided
            .lock()
            .map_or(true, |mut p| p.insert(model.hash));
        if fresh {
            let bytes = model.bytes.as_ref().clone();
            wait(py, h.provide_model(bytes))?.map_err(|e| Error::new_err(e.to_string()))?;
        }
        Ok(())
    }

    /// Waits up to `wait_s` for one worker of `kind` on `engine`, then
    /// `settle` more for the rest of the pool; raises NoPeersError.
    fn workers(
        &self,
        py: Python<'_>,
        kind: TaskKind,
        engine: Option<WorkerEngine>,
        wait_s: f64,
        settle: Duration,
    ) -> PyResult<usize> {
        let h = self.live()?;
        let needs = p2pa_cli::engine::needs(engine);
        let ms = seconds(wait_s);
        let found = wait(py, h.wait_for_workers(Some(kind), needs, 1, ms))?;
        if found.is_empty() {
            let on = engine
                .map(|e| format!(" on {}", e.name()))
                .unwrap_or_default();
            let hint = if self.peers.is_empty() {
                format!(
                    "no peers found that run `{kind}`{on} within {wait_s} s; start one with `p2pa node`, or pass peers=[\"HOST:PORT\"]"
                )
            } else {
                format!(
                    "could not reach a node at {} that runs `{kind}`{on} (is it running there, and does it use a network key? then pass the same network_key)",
                    self.peers.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
                )
            };
            return Err(NoPeersError::new_err(hint));
        }
        if settle.is_zero() {
            return Ok(found.len());
        }
        let all = wait(py, h.settle_workers(Some(kind), needs, settle))?;
        Ok(all.len().max(found.len()))
    }
}

#[pymethods]
impl Node {
    /// Starts a requester node. `peers`: dial only these `HOST:PORT`s (no
    /// beacons); else discover by multicast beacons (and mDNS) as the CLI's
    /// network options say.
    #[new]
    #[pyo3(signature = (*, peers=None, multicast_ttl=1, multicast_port=p2pa_node::io::udp::DEFAULT_PORT,
        multicast_group=None, interface=None, mdns=true, use_identity=false, data_dir=None, network_key=None,
        cipher=None))]
    #[allow(clippy::too_many_arguments)] // the CLI's network options, as keywords
    fn new(
        peers: Option<Vec<String>>,
        multicast_ttl: u32,
        multicast_port: u16,
        multicast_group: Option<&str>,
        interface: Option<&str>,
        mdns: bool,
        use_identity: bool,
        data_dir: Option<PathBuf>,
        network_key: Option<PathBuf>,
        cipher: Option<&str>,
    ) -> PyResult<Self> {
        let ipv4 = |what: &str, s: &str| {
            s.parse::<Ipv4Addr>()
                .map_err(|_| InputError::new_err(format!("{what}: {s:?} is not an IPv4 address")))
        };
        let net = NetArgs {
            multicast_ttl,
            multicast_port,
            multicast_group: match multicast_group {
                Some(g) => ipv4("multicast_group", g)?,
                None => p2pa_node::io::udp::DEFAULT_GROUP,
            },
            interface: interface.map(|i| ipv4("interface", i)).transpose()?,
            no_mdns: !mdns,
            use_identity,
            network_key,
            cipher: match cipher {
                None | Some("auto") => p2pa_cli::Cipher::Auto,
                Some("chacha") => p2pa_cli::Cipher::Chacha,
                Some(other) => {
                    return Err(InputError::new_err(format!(
                        "cipher: {other:?} is not one of \"auto\", \"chacha\""
                    )))
                }
            },
        };
        let peers = peers
            .unwrap_or_default()
            .iter()
            .map(|p| p2pa_cli::parse_host_port(p).map_err(InputError::new_err))
            .collect::<PyResult<Vec<_>>>()?;
        let dir = p2pa_cli::data_dir(data_dir.as_ref());
        let (key, opts) =
            p2pa_cli::requester::requester_options(&net, &peers, &dir).map_err(py_err)?;
        let handle = NodeHandle::start(key, opts)
            .map_err(|e| Error::new_err(format!("cannot start the requester node: {e}")))?;
        Ok(Self {
            handle: Arc::new(handle),
            closed: AtomicBool::new(false),
            provided: Mutex::new(BTreeSet::new()),
            peers,
        })
    }

    /// This node's id (64 hex digits; what allowlists name).
    #[getter]
    fn id(&self) -> String {
        self.handle.id().to_string()
    }

    /// The TCP address it listens on.
    #[getter]
    fn addr(&self) -> String {
        self.handle.local_addr().to_string()
    }

    #[getter]
    fn closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// The peer table after looking for `wait` seconds, as `p2pa peers
    /// --json` prints it: a JSON array.
    fn peers(&self, py: Python<'_>, wait_s: f64) -> PyResult<String> {
        let h = self.live()?;
        let found = crate::wait(py, h.wait_for_peers(None, usize::MAX, seconds(wait_s)))?;
        let list: Vec<serde_json::Value> = found.iter().map(p2pa_cli::output::peer_json).collect();
        Ok(serde_json::Value::Array(list).to_string())
    }

    /// Waits up to `wait` s for a worker of `kind` (on `engine`); how many
    /// there are. Raises NoPeersError.
    #[pyo3(signature = (kind, wait_s, engine=None))]
    fn wait_workers(
        &self,
        py: Python<'_>,
        kind: &str,
        wait_s: f64,
        engine: Option<&str>,
    ) -> PyResult<usize> {
        self.workers(
            py,
            kind_of(kind)?,
            engine_of(engine)?,
            wait_s,
            Duration::ZERO,
        )
    }

    /// Runs one task and returns its outcome (failed ones too).
    #[pyo3(signature = (kind, input, timeout_s, wait_s, model=None, engine=None))]
    #[allow(clippy::too_many_arguments)]
    fn submit(
        &self,
        py: Python<'_>,
        kind: &str,
        input: Vec<u8>,
        timeout_s: f64,
        wait_s: f64,
        model: Option<&Model>,
        engine: Option<&str>,
    ) -> PyResult<Outcome> {
        let kind = kind_of(kind)?;
        let engine = engine_of(engine)?;
        if let Some(m) = model {
            self.offer(py, m)?;
        }
        self.workers(py, kind, engine, wait_s, Duration::ZERO)?;
        let req = TaskRequest {
            kind,
            input: input.into(),
            model: model.map(|m| m.hash),
            timeout: seconds(timeout_s),
            peer: None,
            needs: p2pa_cli::engine::needs(engine),
        };
        let h = self.live()?;
        let o = wait(py, h.submit(req))?.map_err(|e| Error::new_err(e.to_string()))?;
        Ok(Outcome::new(0, o, None))
    }

    /// Starts many tasks; see [`Batch`].
    #[pyo3(signature = (kind, inputs, timeout_s, wait_s, concurrency, batch_size, model=None, engine=None, journal=None))]
    #[allow(clippy::too_many_arguments)]
    fn start_batch(
        &self,
        py: Python<'_>,
        kind: &str,
        inputs: Vec<Vec<u8>>,
        timeout_s: f64,
        wait_s: f64,
        concurrency: usize,
        batch_size: usize,
        model: Option<&Model>,
        engine: Option<&str>,
        journal: Option<PathBuf>,
    ) -> PyResult<Batch> {
        let spec = Spec {
            kind: kind_of(kind)?,
            engine: engine_of(engine)?,
            timeout: seconds(timeout_s),
            concurrency: concurrency.max(1),
            batch_size: batch_size.clamp(1, 1024),
            journal,
        };
        Batch::start(py, self, model, inputs, spec, wait_s)
    }

    /// Says goodbye to every peer and stops the node; tasks still running
    /// end cancelled. Later calls raise Error.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        if !self.closed.swap(true, Ordering::AcqRel) {
            let h = self.handle.clone();
            wait(py, async move { h.stop().await })?;
        }
        Ok(())
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if !self.closed.swap(true, Ordering::AcqRel) {
            // Bounded: a node that does not answer in 2 s is left to exit.
            let h = self.handle.clone();
            async_io::block_on(futures_lite::future::or(h.stop(), async {
                async_io::Timer::after(Duration::from_secs(2)).await;
            }));
        }
    }
}
