"""p2pa: run ONNX models on a pool of machines, as onnxruntime runs them on one.

The workers are ``p2pa node`` processes (a small binary, no Python) on the
machines of your LAN; this package is only a requester. It finds them as
``p2pa batch`` does (signed multicast beacons, mDNS, or the addresses you
give), checks every input against the model before anything is sent, spreads
the work over every worker, retries a task elsewhere when a worker dies, and
keeps each worker's signed receipt::

    import numpy as np, p2pa

    sess = p2pa.InferenceSession("model.onnx")      # finds the pool on the LAN
    x = sess.get_inputs()[0]                        # name, shape, type
    [y] = sess.run(None, {x.name: batch})           # one task, like onnxruntime
    ys = sess.map([{x.name: a} for a in arrays])    # many, over every worker

    with p2pa.Pool(peers=["pi4.lan:7421"]) as pool:  # one node for many models
        sess = pool.session("model.onnx")

Network options (``peers``, ``multicast_ttl``, ``multicast_port``,
``multicast_group``, ``interface``, ``mdns``, ``use_identity``, ``data_dir``,
``network_key``, ``timeout``, ``wait``) are the CLI's; where one is not given,
its ``P2PA_*`` environment variable applies, as for the CLI.

Errors are subclasses of :class:`p2pa.Error`: :class:`NoPeersError`,
:class:`InputError` (nothing was sent), :class:`TaskFailedError` (``.worker``,
``.reason``), :class:`ReceiptError`.
"""

from __future__ import annotations

import atexit
import json
import os
import sys
import threading
import weakref
from dataclasses import dataclass
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from . import _native
from ._native import (
    PROTOCOL_VERSION,
    Error,
    InputError,
    NoPeersError,
    ReceiptError,
    TaskFailedError,
    __version__,
)

__all__ = [
    "Error",
    "InferenceSession",
    "InputError",
    "NoPeersError",
    "NodeArg",
    "Peer",
    "Pool",
    "Receipt",
    "ReceiptError",
    "Result",
    "TaskFailedError",
    "PROTOCOL_VERSION",
    "__version__",
]

# How often a wait returns to Python, so that Ctrl-C is seen at once.
_TICK = 0.1

_ORT_TYPES = {
    "float32": "tensor(float)",
    "float64": "tensor(double)",
    "float16": "tensor(float16)",
    "int64": "tensor(int64)",
    "int32": "tensor(int32)",
    "uint8": "tensor(uint8)",
    "bool": "tensor(bool)",
}

Feed = Mapping[str, Any]
PathLike = Union[str, "os.PathLike[str]"]


def _env(name: str) -> Optional[str]:
    v = os.environ.get(name)
    return v if v not in (None, "") else None


def _env_bool(name: str) -> Optional[bool]:
    v = _env(name)
    if v is None:
        return None
    return v.lower() in ("1", "true", "yes", "on")


class NodeArg:
    """A model input or output, as onnxruntime's ``NodeArg``: ``name``,
    ``shape`` (``None`` for a free dimension) and ``type``
    (``"tensor(float)"`` …); ``dtype`` is numpy's name."""

    __slots__ = ("name", "shape", "type", "dtype")

    def __init__(self, name: str, dtype: Optional[str], shape: Sequence[Optional[int]]):
        self.name = name
        self.dtype = dtype
        self.shape = list(shape)
        self.type = _ORT_TYPES.get(dtype or "", "tensor(unknown)")

    def __repr__(self) -> str:
        return f"NodeArg(name={self.name!r}, type={self.type!r}, shape={self.shape!r})"


class Receipt:
    """A worker's signed answer to one task, checkable offline by anyone
    with no key but the worker's public one (its node id).

    ``json`` is the receipt as ``p2pa verify`` reads it; ``worker``,
    ``requester``, ``task_id``, ``status`` and ``output_sha256`` are its
    fields."""

    __slots__ = ("json", "worker", "requester", "task_id", "status", "output_sha256")

    def __init__(self, text: str):
        d = json.loads(text)
        self.json = text
        self.worker: str = d.get("worker", "")
        self.requester: str = d.get("requester", "")
        self.task_id: int = int(d.get("task_id", 0))
        self.status: str = d.get("status", "")
        self.output_sha256: str = d.get("output", "")

    def verify(self) -> str:
        """Checks the worker's signature over its result; returns what it
        proves. Raises :class:`ReceiptError` when it does not verify."""
        return _native.verify_receipt(self.json)

    def to_dict(self) -> Dict[str, Any]:
        return json.loads(self.json)

    def __repr__(self) -> str:
        return f"Receipt(task_id={self.task_id}, status={self.status!r}, worker={self.worker[:8]!r})"


@dataclass(frozen=True)
class Peer:
    """A peer as ``p2pa peers --json`` shows it."""

    node_id: str
    short_id: str
    addr: Optional[str]
    via: str
    state: str
    kinds: Tuple[str, ...]
    free_slots: int
    rtt_ms: Optional[float]
    last_seen_ms: int
    #: Its owner paused it (``p2pa pause``, or ``--only-when-idle`` while the
    #: machine is in use): it takes no tasks until it resumes.
    paused: bool = False
    #: Its own measured mean run time of the models it holds, as
    #: ``(model sha256 hex, milliseconds)`` pairs (those it has run).
    speeds: Tuple[Tuple[str, float], ...] = ()


@dataclass(frozen=True)
class Result:
    """The outcome of :meth:`Pool.submit`: the output bytes and who answered."""

    output: bytes
    worker: Optional[str]
    receipt: Optional[Receipt]
    elapsed_ms: float
    attempts: int
    task_id: int


def _failed(o: Any, what: str) -> TaskFailedError:
    where = f" on {o.worker[:8]}" if o.worker else ""
    e = TaskFailedError(f"{what} {o.status}{where} after {o.attempts} attempt(s): {o.error}")
    e.worker = o.worker
    e.reason = o.error
    e.status = o.status
    e.index = o.index
    e.task_id = o.task_id
    return e


def _receipt(o: Any) -> Optional[Receipt]:
    return Receipt(o.receipt) if o.receipt else None


_LIVE: "weakref.WeakSet[Pool]" = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    # A script that ends (or is interrupted) says goodbye to its peers.
    for pool in list(_LIVE):
        try:
            pool.close()
        except Exception:  # noqa: BLE001 - best effort at exit
            pass


class Pool:
    """A requester node on the pool (its own thread), shared by sessions,
    models and threads. Use it as a context manager, or call :meth:`close`.

    ``peers``: ``["HOST:PORT", …]`` to dial only those nodes (no beacons);
    by default the pool is discovered on the LAN. ``multicast_ttl=0`` keeps
    discovery on this host. ``use_identity``: sign with this machine's key
    (``p2pa keygen``) so allowlisting workers accept it. ``network_key``: the
    network's key file. ``cipher``: ``"auto"`` (AES-256-GCM with workers that
    offer it too, where this CPU has AES in hardware) or ``"chacha"``
    (ChaCha20-Poly1305 always). ``timeout``: seconds per task, retries included.
    ``wait``: seconds to look for a worker before :class:`NoPeersError`.
    """

    def __init__(
        self,
        peers: Optional[Sequence[str]] = None,
        *,
        multicast_ttl: Optional[int] = None,
        multicast_port: Optional[int] = None,
        multicast_group: Optional[str] = None,
        interface: Optional[str] = None,
        mdns: Optional[bool] = None,
        use_identity: Optional[bool] = None,
        data_dir: Optional[PathLike] = None,
        network_key: Optional[PathLike] = None,
        cipher: Optional[str] = None,
        timeout: float = 30.0,
        wait: float = 3.0,
    ):
        if isinstance(peers, str):
            peers = [peers]
        ttl = multicast_ttl if multicast_ttl is not None else _env("P2PA_MULTICAST_TTL")
        port = multicast_port if multicast_port is not None else _env("P2PA_MULTICAST_PORT")
        no_mdns = _env_bool("P2PA_NO_MDNS")
        opts: Dict[str, Any] = {
            "peers": list(peers) if peers else None,
            "multicast_group": multicast_group or _env("P2PA_MULTICAST_GROUP"),
            "interface": interface or _env("P2PA_INTERFACE"),
            "mdns": mdns if mdns is not None else not bool(no_mdns),
            "use_identity": bool(use_identity if use_identity is not None else _env_bool("P2PA_USE_IDENTITY")),
            "data_dir": os.fspath(data_dir) if data_dir is not None else _env("P2PA_DATA_DIR"),
            "network_key": os.fspath(network_key) if network_key is not None else _env("P2PA_NETWORK_KEY"),
            "cipher": cipher or _env("P2PA_CIPHER"),
        }
        if ttl is not None:
            opts["multicast_ttl"] = int(ttl)
        if port is not None:
            opts["multicast_port"] = int(port)
        self._data_dir = opts["data_dir"]
        self.timeout = float(timeout)
        self.wait = float(wait)
        self._node = _native.Node(**opts)
        self._lock = threading.Lock()
        _LIVE.add(self)

    @property
    def id(self) -> str:
        """This requester's node id (what a worker's allowlist names)."""
        return self._node.id

    @property
    def closed(self) -> bool:
        return self._node.closed

    def session(self, model: Union[PathLike, bytes], *, engine: Optional[str] = None) -> "InferenceSession":
        """An :class:`InferenceSession` for ``model`` on this pool.
        ``engine``: use only workers running ``"onnxruntime"`` or ``"tract"``."""
        return InferenceSession(model, pool=self, engine=engine)

    def peers(self, wait: float = 1.0) -> List[Peer]:
        """The peers found after looking for ``wait`` seconds."""
        rows = json.loads(self._node.peers(float(wait)))
        known = set(Peer.__dataclass_fields__)

        def peer(r: Dict[str, Any]) -> Peer:
            # A newer node's keys that this version does not know are left out.
            r = {k: v for k, v in r.items() if k in known}
            r["kinds"] = tuple(r.get("kinds", ()))
            r["speeds"] = tuple((s["model"], float(s["mean_ms"])) for s in r.get("speeds", ()))
            return Peer(**r)

        return [peer(r) for r in rows]

    def submit(self, kind: str, data: Union[bytes, str], *, timeout: Optional[float] = None) -> Result:
        """Runs one task of another kind (``"echo"``, ``"hash"``,
        ``"sleep"``) and returns its :class:`Result`; raises
        :class:`TaskFailedError` when it does not complete."""
        payload = data.encode() if isinstance(data, str) else bytes(data)
        o = self._node.submit(kind, payload, self._timeout(timeout), self.wait)
        if o.status != "completed":
            raise _failed(o, f"{kind} task")
        return Result(o.output, o.worker, _receipt(o), o.elapsed_ms, o.attempts, o.task_id)

    def close(self) -> None:
        """Says goodbye to every peer and stops the node (idempotent)."""
        self._node.close()
        _LIVE.discard(self)

    def _timeout(self, t: Optional[float]) -> float:
        return float(self.timeout if t is None else t)

    def __enter__(self) -> "Pool":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"Pool(id={self.id[:8]!r}, {state})"


def _progress(total: int, wanted: Optional[bool]) -> Any:
    """A tqdm bar where tqdm is installed and stderr is a terminal or a
    notebook (``wanted=None``), always (``True``, if installed), or never."""
    if wanted is False or total == 0:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    in_notebook = "ipykernel" in sys.modules
    if wanted is None and not (in_notebook or sys.stderr.isatty()):
        return None
    return tqdm(total=total, unit="task", desc="p2pa")


class InferenceSession:
    """An ONNX model run on the pool, with onnxruntime's interface.

    ``path_or_bytes``: an ``.onnx`` file, its bytes, or the hash of a model
    in the data directory's store (``p2pa model add``). Workers that lack
    the model fetch it from this process (once). ``sess_options`` and
    ``providers`` are accepted for onnxruntime compatibility and ignored:
    the workers choose their engine (ask for one with ``engine=``).
    Without ``pool=``, the session starts its own :class:`Pool` with the
    remaining keyword options and closes it with :meth:`close`.
    """

    def __init__(
        self,
        path_or_bytes: Union[PathLike, bytes],
        sess_options: Any = None,
        providers: Any = None,
        *,
        engine: Optional[str] = None,
        pool: Optional[Pool] = None,
        **pool_options: Any,
    ):
        if pool is not None and pool_options:
            raise TypeError(f"pool= and pool options ({', '.join(pool_options)}) cannot both be given")
        if engine not in (None, "onnxruntime", "tract"):
            raise InputError(f"unknown engine {engine!r} (known: onnxruntime, tract)")
        data_dir = pool._data_dir if pool is not None else pool_options.get("data_dir")
        source = path_or_bytes if isinstance(path_or_bytes, (bytes, bytearray)) else os.fspath(path_or_bytes)
        if isinstance(source, bytearray):
            source = bytes(source)
        self._model = _native.Model(source, os.fspath(data_dir) if data_dir else None)
        self._own_pool = pool is None
        self._pool = pool if pool is not None else Pool(**pool_options)
        self._engine = engine
        #: The receipt of the last :meth:`run` (None before the first).
        self.last_receipt: Optional[Receipt] = None
        self._inputs = [NodeArg(*a) for a in self._model.inputs()]
        self._outputs = [NodeArg(*a) for a in self._model.outputs()]

    # -- onnxruntime's interface -------------------------------------------

    def get_inputs(self) -> List[NodeArg]:
        """The model's declared inputs."""
        return list(self._inputs)

    def get_outputs(self) -> List[NodeArg]:
        """The model's declared outputs."""
        return list(self._outputs)

    def get_providers(self) -> List[str]:
        return ["p2pa"]

    def run(
        self,
        output_names: Optional[Sequence[str]],
        input_feed: Feed,
        run_options: Any = None,
    ) -> List[np.ndarray]:
        """Runs one task on some worker: the outputs named in
        ``output_names`` (all when ``None``), as numpy arrays, in order."""
        pick = self._picker(output_names)
        o = self._pool._node.submit(
            "infer",
            self._encode(input_feed),
            self._pool.timeout,
            self._pool.wait,
            model=self._model,
            engine=self._engine,
        )
        if o.status != "completed":
            raise _failed(o, "task")
        self.last_receipt = _receipt(o)
        return pick(o.output)

    # -- many tasks ----------------------------------------------------------

    def map(
        self,
        feeds: Iterable[Feed],
        batch_size: int = 1,
        *,
        output_names: Optional[Sequence[str]] = None,
        journal: Optional[PathLike] = None,
        progress: Optional[bool] = None,
        concurrency: int = 64,
        timeout: Optional[float] = None,
    ) -> List[List[np.ndarray]]:
        """Runs every feed over the whole pool; their outputs in input order.

        Every feed is checked before anything is sent. ``batch_size``:
        stack up to that many consecutive feeds of the same shapes along
        axis 0 into one task (results stay per feed). ``journal``: a
        results file in ``p2pa batch``'s format; feeds completed in it are
        not run again (a re-run cell resumes), and ``p2pa verify`` checks
        its receipts. A tqdm bar shows progress on a terminal or in a
        notebook (``progress=False`` turns it off). Raises
        :class:`TaskFailedError` for a feed that failed on every worker
        tried; what completed is in the journal.
        """
        pick = self._picker(output_names)
        inputs = [self._encode(f) for f in feeds]
        results: List[Optional[List[np.ndarray]]] = [None] * len(inputs)
        for o in self._stream(inputs, batch_size, journal, progress, concurrency, timeout):
            results[o.index] = pick(o.output)
        return results  # type: ignore[return-value]

    def imap_unordered(
        self,
        feeds: Iterable[Feed],
        batch_size: int = 1,
        *,
        output_names: Optional[Sequence[str]] = None,
        journal: Optional[PathLike] = None,
        progress: Optional[bool] = False,
        concurrency: int = 64,
        timeout: Optional[float] = None,
    ) -> Iterator[Tuple[int, List[np.ndarray], Optional[Receipt]]]:
        """As :meth:`map`, yielding ``(index, outputs, receipt)`` as results
        arrive. Leaving the loop early cancels the tasks not yet done."""
        pick = self._picker(output_names)
        inputs = [self._encode(f) for f in feeds]
        for o in self._stream(inputs, batch_size, journal, progress, concurrency, timeout):
            yield o.index, pick(o.output), _receipt(o)

    def close(self) -> None:
        """Closes the session's own pool (a shared pool stays open)."""
        if self._own_pool:
            self._pool.close()

    def __enter__(self) -> "InferenceSession":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"InferenceSession({self._model.source!r}, inputs={[i.name for i in self._inputs]})"

    # -- parts ---------------------------------------------------------------

    def _encode(self, feed: Feed) -> bytes:
        if not isinstance(feed, Mapping):
            raise InputError(f"a feed is a dict of input name to array, got {type(feed).__name__}")
        items = [(str(k), v if isinstance(v, np.ndarray) else np.asarray(v)) for k, v in feed.items()]
        return self._model.encode(items)

    def _picker(self, output_names: Optional[Sequence[str]]):
        names = [o.name for o in self._outputs]
        if output_names is None:
            return lambda out: [a for _, a in _native.decode(out)]
        wanted = list(output_names)
        unknown = [n for n in wanted if n not in names]
        if unknown:
            raise InputError(f"no output named {unknown[0]!r} (outputs: {', '.join(names)})")

        def pick(out: bytes) -> List[np.ndarray]:
            got = _native.decode(out)
            by_name = {n: a for n, a in got if n is not None}
            return [by_name[n] if n in by_name else got[names.index(n)][1] for n in wanted]

        return pick

    def _stream(self, inputs, batch_size, journal, progress, concurrency, timeout):
        batch = self._pool._node.start_batch(
            "infer",
            inputs,
            self._pool._timeout(timeout),
            self._pool.wait,
            int(concurrency),
            int(batch_size),
            model=self._model,
            engine=self._engine,
            journal=os.fspath(journal) if journal is not None else None,
        )
        bar = _progress(batch.total, progress)
        got = 0
        try:
            while got < batch.total:
                arrived = batch.next_many(_TICK, 256)
                got += len(arrived)
                if bar is not None and arrived:
                    bar.update(len(arrived))
                for o in arrived:
                    if o.status != "completed":
                        raise _failed(o, f"input {o.index}:")
                    yield o
        finally:
            batch.cancel()
            if bar is not None:
                bar.close()
