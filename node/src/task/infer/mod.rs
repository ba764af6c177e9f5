//! The `infer` task: ONNX models, run by onnxruntime where the host has it
//! and by tract (pure Rust, every board) everywhere else. This module owns
//! what both share: the model's declared inputs (read from the ONNX file
//! itself, so a model either engine can run is checked the same way), the
//! checks of a task's tensors against them, the choice of engine per model,
//! and the bounded caches of loaded models and plans. The backends own only
//! loading and running (`tract`, `ort`); `locate` finds onnxruntime.
//! In a node this runs inside a child process (`task::child`), where a crash
//! takes down only that process.

pub mod locate;
#[cfg(feature = "onnxruntime")]
mod ort;
mod spec;
pub mod tract;

use std::sync::{Arc, Mutex};

use p2pa_protocol::FailReason;

use super::Ran;

pub use super::engine::{EngineChoice, EngineInfo, EngineKind, EngineOptions};
use super::tensor::{self, Dtype, TensorError};
use crate::hex::hex;
use crate::models::{ModelError, ModelStore};
use spec::declared;
pub use spec::{arrange, check, model_inputs, model_signature, InputSpec, Shape};
pub use tract::{read, Proto};

/// A model loaded by one engine, with what both engines need of it.
struct Loaded {
    backend: Backend,
    inputs: Vec<InputSpec>,
    /// Output names, in the model's order.
    outputs: Vec<String>,
    /// File size, a proxy for its memory.
    bytes: usize,
}

enum Backend {
    Tract(tract::Parsed),
    #[cfg(feature = "onnxruntime")]
    Ort(ort::Model),
}

impl Backend {
    fn kind(&self) -> EngineKind {
        match self {
            Self::Tract(_) => EngineKind::Tract,
            #[cfg(feature = "onnxruntime")]
            Self::Ort(_) => EngineKind::Onnxruntime,
        }
    }
}

/// Parsed models kept at once; the least recently used goes first (the disk
/// store keeps them all; parsing again costs a read, not a fetch).
pub const MAX_LOADED: usize = 4;
/// Optimised plans kept at once, over every (model, input shapes).
pub const MAX_PLANS: usize = 8;
/// Memory the kept models and plans may take, counted as their file size
/// each (weights dominate); the one in use always stays.
pub const MAX_LOADED_BYTES: usize = 512 << 20;

/// Least recently used first.
struct Lru<K, V> {
    entries: Vec<(K, V, usize)>,
    max: usize,
}

impl<K: PartialEq, V: Clone> Lru<K, V> {
    fn get(&mut self, k: &K) -> Option<V> {
        let i = self.entries.iter().position(|(key, _, _)| key == k)?;
        let e = self.entries.remove(i);
        let v = e.1.clone();
        self.entries.push(e);
        Some(v)
    }

    fn put(&mut self, k: K, v: V, bytes: usize, budget: usize) {
        self.entries.retain(|(key, _, _)| *key != k);
        let total =
            |e: &Vec<(K, V, usize)>| e.iter().map(|x| x.2).fold(bytes, usize::saturating_add);
        while !self.entries.is_empty()
            && (self.entries.len() >= self.max || total(&self.entries) > budget)
        {
            self.entries.remove(0);
        }
        self.entries.push((k, v, bytes));
    }

    fn len(&self) -> usize {
        self.entries.len()
    }
}

type PlanKey = ([u8; 32], Vec<(Dtype, Vec<usize>)>);

/// Runs `infer` tasks against the models in a store.
pub struct Engine {
    /// Where models come from (`None`: only those given with [`Engine::hold`]).
    store: Option<ModelStore>,
    info: EngineInfo,
    /// Whether a model onnxruntime refuses may run on tract.
    #[cfg_attr(not(feature = "onnxruntime"), allow(dead_code))]
    fallback: bool,
    #[cfg_attr(not(feature = "onnxruntime"), allow(dead_code))]
    threads: usize,
    parsed: Mutex<Lru<[u8; 32], Arc<Loaded>>>,
    plans: Mutex<Lru<PlanKey, tract::Plan>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("store", &self.store)
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

/// Why an `infer` task failed (its text is the task's failure output).
#[derive(Debug)]
#[non_exhaustive]
pub enum InferError {
    /// The task named no model.
    NoModel,
    /// The model is not in the store (or cannot be read).
    Store(ModelError),
    /// The engine could not load the model, or optimise it for these shapes.
    Load {
        /// The model's hash.
        model: [u8; 32],
        /// The engine's reason, with the operator and node it names.
        why: String,
    },
    /// The input is not a valid tensor set.
    Input(TensorError),
    /// The input has another number of tensors than the model.
    InputCount {
        /// What the model takes.
        want: usize,
        /// What came.
        got: usize,
    },
    /// A named input tensor the model does not take.
    UnknownInput {
        /// The name given.
        name: String,
        /// The model's input names.
        want: Vec<String>,
    },
    /// An input tensor's shape or dtype differs from the model's.
    WrongShape {
        /// The model input's name.
        input: String,
        /// The model's shape.
        want: Shape,
        /// The model's dtype (`None`: not declared).
        want_dtype: Option<Dtype>,
        /// The input's shape.
        got: Shape,
        /// The input's dtype.
        got_dtype: Dtype,
    },
    /// The engine failed while running it.
    Run(String),
}

impl InferError {
    /// What the requester is told of it: the task's own fault (its input,
    /// or no model named), the model's (not to be had), or this worker's
    /// (its engine cannot load or run the model: another engine may).
    pub fn reason(&self) -> FailReason {
        match self {
            Self::NoModel
            | Self::Input(_)
            | Self::InputCount { .. }
            | Self::UnknownInput { .. }
            | Self::WrongShape { .. } => FailReason::Task,
            Self::Store(_) => FailReason::Model,
            Self::Load { .. } | Self::Run(_) => FailReason::Worker,
        }
    }
}

impl std::fmt::Display for InferError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoModel => f.write_str("an infer task needs a model hash"),
            Self::Store(e) => e.fmt(f),
            Self::Load { model, why } => {
                write!(f, "model {} failed to load: {why}", hex(model))
            }
            Self::Input(e) => write!(f, "bad input tensors: {e}"),
            Self::InputCount { want, got } => {
                write!(f, "the model takes {want} input tensors, got {got}")
            }
            Self::UnknownInput { name, want } => write!(
                f,
                "the model has no input named {name:?} (its inputs: {})",
                want.join(", ")
            ),
            Self::WrongShape {
                input,
                want,
                want_dtype,
                got,
                got_dtype,
            } => {
                let dt = want_dtype.map_or("any dtype", Dtype::name);
                write!(
                    f,
                    "wrong input {input:?}: the model expects {want} ({dt}), got {got} ({got_dtype})"
                )
            }
            Self::Run(e) => write!(f, "inference failed: {e}"),
        }
    }
}

impl std::error::Error for InferError {}

impl Engine {
    /// How many models are loaded and kept now.
    pub fn loaded(&self) -> usize {
        self.parsed.lock().map_or(0, |m| m.len())
    }

    /// The models loaded and kept now, most recently used last.
    pub fn loaded_models(&self) -> Vec<[u8; 32]> {
        self.parsed
            .lock()
            .map(|m| m.entries.iter().map(|e| e.0).collect())
            .unwrap_or_default()
    }

    /// How many optimised tract plans are kept now.
    pub fn plans(&self) -> usize {
        self.plans.lock().map_or(0, |m| m.len())
    }

    /// An engine over the models in `store` (each loaded on first use), with
    /// the default engine choice (`auto`).
    pub fn new(store: ModelStore) -> Self {
        Self::auto(Some(store))
    }

    /// An engine with no store: it runs the models given to [`Engine::hold`].
    pub fn in_memory() -> Self {
        Self::auto(None)
    }

    /// `auto` with the default options: it cannot fail (without onnxruntime
    /// it is tract).
    fn auto(store: Option<ModelStore>) -> Self {
        let opts = EngineOptions::default();
        let info = onnxruntime(&opts).unwrap_or_else(|why| tract_info(Some(why)));
        Self {
            info,
            fallback: true,
            ..Self::tract(store)
        }
    }

    /// An engine with no store, set up as `opts` says.
    pub fn new_in_memory(opts: &EngineOptions) -> Result<Self, String> {
        Self::with_store(None, opts)
    }

    /// An engine over `store` set up as `opts` says; an error when
    /// onnxruntime was asked for and does not load.
    pub fn with_store(store: Option<ModelStore>, opts: &EngineOptions) -> Result<Self, String> {
        let threads = opts.threads.max(1);
        let (info, fallback) = match opts.choice {
            EngineChoice::Only(EngineKind::Tract) => (tract_info(None), false),
            EngineChoice::Only(EngineKind::Onnxruntime) => (onnxruntime(opts)?, false),
            EngineChoice::Auto => match onnxruntime(opts) {
                Ok(info) => (info, true),
                Err(why) => (tract_info(Some(why)), true),
            },
        };
        Ok(Self {
            threads,
            info,
            fallback,
            ..Self::tract(store)
        })
    }

    fn tract(store: Option<ModelStore>) -> Self {
        Self {
            store,
            info: tract_info(None),
            fallback: false,
            threads: 1,
            parsed: Mutex::new(Lru {
                entries: Vec::new(),
                max: MAX_LOADED,
            }),
            plans: Mutex::new(Lru {
                entries: Vec::new(),
                max: MAX_PLANS,
            }),
        }
    }

    /// The engine this one runs models with first.
    pub fn info(&self) -> &EngineInfo {
        &self.info
    }

    /// The engine that runs a model this engine has loaded.
    pub fn engine_of(&self, hash: &[u8; 32]) -> Option<EngineKind> {
        let loaded = self.parsed.lock().ok()?.get(hash)?;
        Some(loaded.backend.kind())
    }

    /// The declared inputs of a model this engine has loaded (after
    /// [`Engine::hold`], say), without reading it again.
    pub fn inputs(&self, hash: &[u8; 32]) -> Option<Vec<InputSpec>> {
        let loaded = self.parsed.lock().ok()?.get(hash)?;
        Some(loaded.inputs.clone())
    }

    /// Loads `model` and keeps it (as long as the LRU does); returns its hash.
    pub fn hold(&self, model: &[u8]) -> Result<[u8; 32], InferError> {
        let hash = crate::core::sha256(model);
        let loaded = Arc::new(self.load(&hash, model)?);
        if let Ok(mut m) = self.parsed.lock() {
            m.put(hash, loaded, model.len(), MAX_LOADED_BYTES / 2);
        }
        Ok(hash)
    }

    /// Loads a model with the first engine, or with tract where onnxruntime
    /// refuses it and falling back is allowed.
    fn load(&self, hash: &[u8; 32], bytes: &[u8]) -> Result<Loaded, InferError> {
        let load_err = |why: String| InferError::Load { model: *hash, why };
        let proto = read(bytes).map_err(load_err)?;
        let (inputs, outputs) = declared(&proto);
        let loaded = |backend| Loaded {
            backend,
            inputs: inputs.clone(),
            outputs: outputs.clone(),
            bytes: bytes.len(),
        };
        #[cfg(feature = "onnxruntime")]
        if self.info.kind == EngineKind::Onnxruntime {
            match ort::open(bytes, self.threads) {
                Ok(m) => return Ok(loaded(Backend::Ort(m))),
                Err(why) if !self.fallback => return Err(load_err(why)),
                Err(why) => log::warn!(
                    "onnxruntime refused model {} ({why}); it runs on tract",
                    hex(hash)
                ),
            }
        }
        let parsed = tract::parse(&proto).map_err(|e| load_err(explain_tract(&e)))?;
        Ok(loaded(Backend::Tract(parsed)))
    }

    fn loaded_model(&self, hash: &[u8; 32]) -> Result<Arc<Loaded>, InferError> {
        if let Some(p) = self.parsed.lock().ok().and_then(|mut m| m.get(hash)) {
            return Ok(p);
        }
        let bytes = match &self.store {
            Some(store) => store.read(hash).map_err(InferError::Store)?,
            None => return Err(InferError::Store(ModelError::NotFound { hash: *hash })),
        };
        let loaded = Arc::new(self.load(hash, &bytes)?);
        if let Ok(mut m) = self.parsed.lock() {
            m.put(*hash, loaded.clone(), loaded.bytes, MAX_LOADED_BYTES / 2);
        }
        Ok(loaded)
    }

    /// tract's plan for `hash` with these inputs, optimised once per shape set.
    fn plan(
        &self,
        hash: &[u8; 32],
        model: &Loaded,
        parsed: &tract::Parsed,
        inputs: &[tensor::Tensor],
    ) -> Result<tract::Plan, InferError> {
        let key: PlanKey = (
            *hash,
            inputs.iter().map(|t| (t.dtype, t.shape.clone())).collect(),
        );
        if let Some(p) = self.plans.lock().ok().and_then(|mut m| m.get(&key)) {
            return Ok(p);
        }
        let plan = tract::plan(parsed, inputs).map_err(|e| InferError::Load {
            model: *hash,
            why: explain_tract(&e),
        })?;
        if let Ok(mut m) = self.plans.lock() {
            m.put(key, plan.clone(), model.bytes, MAX_LOADED_BYTES / 2);
        }
        Ok(plan)
    }

    /// Runs model `model` on the tensor set `input`; the output is a tensor
    /// set, or the failure's text.
    pub fn run(&self, model: Option<[u8; 32]>, input: &[u8]) -> Ran {
        match self.infer(model, input) {
            Ok(out) => Ran::completed(out),
            Err(e) => Ran::failed(e.reason(), e.to_string()),
        }
    }

    fn infer(&self, model: Option<[u8; 32]>, input: &[u8]) -> Result<Vec<u8>, InferError> {
        let hash = model.ok_or(InferError::NoModel)?;
        let loaded = self.loaded_model(&hash)?;
        let tensors = tensor::decode(input).map_err(InferError::Input)?;
        let tensors = arrange(&loaded.inputs, tensors)?;
        let outputs = match &loaded.backend {
            Backend::Tract(parsed) => {
                let plan = self.plan(&hash, &loaded, parsed, &tensors)?;
                let out = tract::run(&plan, tensors)?;
                name(out, &loaded.outputs)
            }
            #[cfg(feature = "onnxruntime")]
            Backend::Ort(m) => {
                let names: Vec<String> = loaded.inputs.iter().map(|i| i.name.clone()).collect();
                ort::run(m, &names, tensors)?
            }
        };
        Ok(tensor::encode(&outputs))
    }
}

/// Outputs named after the model's outputs, in order.
fn name(out: Vec<tensor::Tensor>, names: &[String]) -> Vec<tensor::Tensor> {
    out.into_iter()
        .zip(names.iter().map(Some).chain(std::iter::repeat(None)))
        .map(|(t, n)| match n {
            Some(n) => t.named(n.clone()),
            None => t,
        })
        .collect()
}

fn tract_info(note: Option<String>) -> EngineInfo {
    EngineInfo {
        kind: EngineKind::Tract,
        version: tract::VERSION.to_owned(),
        note,
    }
}

/// onnxruntime, loaded, or why not.
#[cfg(feature = "onnxruntime")]
fn onnxruntime(opts: &EngineOptions) -> Result<EngineInfo, String> {
    let (lib, source) = locate::find(opts.onnxruntime_lib.as_deref());
    match ort::load(&lib) {
        Ok(version) => Ok(EngineInfo {
            kind: EngineKind::Onnxruntime,
            version,
            note: Some(format!("{} {}", lib.display(), source.describe())),
        }),
        Err(why) => Err(format!(
            "onnxruntime not loaded: {why}; `pip install onnxruntime` or --onnxruntime-lib PATH"
        )),
    }
}

#[cfg(not(feature = "onnxruntime"))]
fn onnxruntime(_: &EngineOptions) -> Result<EngineInfo, String> {
    Err("this p2pa was built without the onnxruntime engine".into())
}

/// tract's reason for refusing a model, with what to do about it: its first
/// line names the node and operator; the rest of its chain is kept short.
fn explain_tract(e: &tract_onnx::prelude::TractError) -> String {
    let chain: Vec<String> = e.chain().map(|c| c.to_string()).collect();
    let hint = if cfg!(feature = "onnxruntime") {
        "onnxruntime runs more models: install it (pip install onnxruntime) and run with --engine auto"
    } else {
        "a p2pa built with the onnxruntime engine may run it"
    };
    let mut text = lead(&chain).unwrap_or_default();
    text.extend(chain.join(": ").chars().take(1200));
    text.push_str(&format!(" (tract {}; {hint})", tract::VERSION));
    text
}

/// A plain first sentence for a refusal tract's own account buries: an
/// `If` node, whose branches tract analyses with the same input facts, so
/// a branch written for other inputs (silero-vad's 8 kHz path) fails.
fn lead(chain: &[String]) -> Option<String> {
    chain.iter().find_map(|c| {
        let rest = c.strip_prefix("Failed analyse for node #")?;
        let (_, rest) = rest.split_once(' ')?;
        let (name, op) = rest.rsplit_once(' ')?;
        (op == "If").then(|| {
            format!(
                "tract cannot run this model's If node {name}: it works out both \
                 branches' shapes from the same inputs, and one branch cannot take \
                 them. tract's account: "
            )
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::tensor::Tensor as T;
    use p2pa_protocol::TaskStatus;

    fn digits() -> (Vec<u8>, Vec<(Vec<f32>, i64)>) {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models");
        let model = std::fs::read(root.join("digits.onnx")).unwrap();
        let text = std::fs::read_to_string(root.join("digits_test.jsonl")).unwrap();
        let rows = text
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                let x = v["input"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|f| f.as_f64().unwrap() as f32)
                    .collect();
                (x, v["label"].as_i64().unwrap())
            })
            .collect();
        (model, rows)
    }

    fn engine(name: &str) -> (Engine, ModelStore, crate::models::TestDir) {
        let dir = crate::models::TestDir::new(&format!("infer-{name}"));
        let store = ModelStore::new(dir.0.clone(), 1 << 20);
        (Engine::new(store.clone()), store, dir)
    }

    fn label(out: &[u8]) -> i64 {
        let set = tensor::decode(out).unwrap();
        set[1].i64s().expect("label is i64")[0]
    }

    #[test]
    fn digits_model_classifies_the_test_split() {
        let (model, rows) = digits();
        let (engine, store, _dir) = engine("acc");
        let hash = store.put(None, &model).unwrap();
        let mut right = 0;
        for (x, y) in &rows {
            let input = tensor::encode(&[T::f32(vec![1, 64], x.clone()).unwrap()]);
            let Ran {
                status,
                output: out,
                ..
            } = engine.run(Some(hash), &input);
            assert_eq!(
                status,
                TaskStatus::Completed,
                "{}",
                String::from_utf8_lossy(&out)
            );
            let set = tensor::decode(&out).unwrap();
            assert_eq!(set[0].shape, vec![1, 10]);
            assert_eq!(set[0].dtype, Dtype::F32);
            right += usize::from(label(&out) == *y);
        }
        let acc = right as f64 / rows.len() as f64;
        assert!(acc > 0.95, "accuracy {acc}");
        // Loaded once: it keeps working after the file is gone.
        std::fs::remove_file(store.path(&hash)).unwrap();
        let input =
            tensor::encode(&[
                T::f32(vec![2, 64], [rows[0].0.clone(), rows[1].0.clone()].concat()).unwrap(),
            ]);
        let Ran {
            status,
            output: out,
            ..
        } = engine.run(Some(hash), &input);
        assert_eq!(status, TaskStatus::Completed);
        assert_eq!(
            tensor::decode(&out).unwrap()[1].shape,
            vec![2],
            "batch of two"
        );
    }

    /// tract's account of silero-vad's refusal (tract 0.23), as its error
    /// chain: the `If` node gets a plain first sentence; other failures
    /// keep tract's account alone.
    #[test]
    fn a_refused_if_node_is_named_in_a_first_sentence() {
        let chain: Vec<String> = [
            "Failed analyse for node #5 \"If_0\" If",
            "Infering facts",
            "Failed analyse for node #1 \"If_0_else_branch/decoder/Squeeze\" Squeeze13",
            "Attempt to squeeze an axis which dimension is not one",
        ]
        .map(String::from)
        .into();
        let first = lead(&chain).expect("an If node is named");
        assert!(
            first.starts_with("tract cannot run this model's If node \"If_0\": "),
            "{first}"
        );
        assert_eq!(
            lead(&chain[2..]),
            None,
            "a Squeeze alone keeps tract's words"
        );
        assert_eq!(
            lead(&["Failed analyse for node #3 \"My If\" Add".into()]),
            None
        );
    }

    #[test]
    fn wrong_shape_missing_model_and_broken_model_fail_with_reasons() {
        let (model, _) = digits();
        let (engine, store, _dir) = engine("bad");
        let hash = store.put(None, &model).unwrap();
        let wrong = tensor::encode(&[T::f32(vec![1, 60], vec![0.0; 60]).unwrap()]);
        let Ran {
            status,
            output: out,
            ..
        } = engine.run(Some(hash), &wrong);
        let msg = String::from_utf8(out).unwrap();
        assert_eq!(status, TaskStatus::Failed);
        assert!(msg.contains("[N, 64]") && msg.contains("[1, 60]"), "{msg}");
        let ints = tensor::encode(&[T::i64(vec![1, 64], vec![0; 64]).unwrap()]);
        let Ran {
            status,
            output: out,
            ..
        } = engine.run(Some(hash), &ints);
        assert_eq!(status, TaskStatus::Failed);
        assert!(String::from_utf8(out)
            .unwrap()
            .contains("(f32), got [1, 64] (i64)"));
        let missing = engine.run(Some([7; 32]), &wrong);
        assert_eq!(missing.reason, Some(FailReason::Model));
        assert!(String::from_utf8(missing.output)
            .unwrap()
            .contains("not in the store"));
        let broken = store.put(None, b"this is not an onnx model").unwrap();
        let Ran {
            status,
            output: out,
            ..
        } = engine.run(Some(broken), &wrong);
        assert_eq!(status, TaskStatus::Failed);
        let ran = engine.run(Some(broken), &wrong);
        assert_eq!(
            ran.reason,
            Some(FailReason::Worker),
            "another engine may load it"
        );
        assert!(String::from_utf8(out).unwrap().contains("failed to load"));
        let ran = engine.run(Some(hash), b"\x01\x09");
        assert_eq!(
            (ran.status, ran.reason),
            (TaskStatus::Failed, Some(FailReason::Task))
        );
    }
}
