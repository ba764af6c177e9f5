"""Type stubs of the native half of p2pa (the Rust extension module).

Users need none of it directly: ``p2pa.InferenceSession`` and ``p2pa.Pool``
are built on it."""

from os import PathLike
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np

__version__: str
PROTOCOL_VERSION: int

class Error(Exception):
    """Every error of p2pa's own is one of these."""

class NoPeersError(Error):
    """No worker that runs the task was found (within ``wait`` seconds)."""

class InputError(Error):
    """An input does not fit the model (names, dtypes, shapes): nothing was sent."""

class TaskFailedError(Error):
    """A task did not complete: ``.worker`` and ``.reason`` say where and why."""

    worker: Optional[str]
    reason: Optional[str]
    status: str
    index: int
    task_id: int

class ReceiptError(Error):
    """A receipt does not verify (a wrong signature, or another output)."""

Arg = Tuple[str, Optional[str], List[Optional[int]]]

class Model:
    def __init__(self, source: Union[str, PathLike[str], bytes], data_dir: Optional[str] = None) -> None: ...
    @property
    def hash(self) -> str: ...
    @property
    def source(self) -> str: ...
    @property
    def size(self) -> int: ...
    def inputs(self) -> List[Arg]: ...
    def outputs(self) -> List[Arg]: ...
    def fixed_batch(self) -> Optional[str]: ...
    def encode(self, feeds: Sequence[Tuple[str, np.ndarray]]) -> bytes: ...

class Outcome:
    index: int
    status: str
    task_id: int
    worker: Optional[str]
    error: Optional[str]
    elapsed_ms: float
    attempts: int
    receipt: Optional[str]
    resumed: bool
    @property
    def output(self) -> bytes: ...

class Batch:
    total: int
    resumed: int
    workers: int
    def next(self, timeout: float) -> Optional[Outcome]: ...
    def next_many(self, timeout: float, max: int) -> List[Outcome]: ...
    def cancel(self) -> None: ...

class Node:
    def __init__(
        self,
        *,
        peers: Optional[Sequence[str]] = None,
        multicast_ttl: int = 1,
        multicast_port: int = ...,
        multicast_group: Optional[str] = None,
        interface: Optional[str] = None,
        mdns: bool = True,
        use_identity: bool = False,
        data_dir: Optional[str] = None,
        network_key: Optional[str] = None,
        cipher: Optional[str] = None,
    ) -> None: ...
    @property
    def id(self) -> str: ...
    @property
    def addr(self) -> str: ...
    @property
    def closed(self) -> bool: ...
    def peers(self, wait_s: float) -> str: ...
    def wait_workers(self, kind: str, wait_s: float, engine: Optional[str] = None) -> int: ...
    def submit(
        self,
        kind: str,
        input: bytes,
        timeout_s: float,
        wait_s: float,
        model: Optional[Model] = None,
        engine: Optional[str] = None,
    ) -> Outcome: ...
    def start_batch(
        self,
        kind: str,
        inputs: Sequence[bytes],
        timeout_s: float,
        wait_s: float,
        concurrency: int,
        batch_size: int,
        model: Optional[Model] = None,
        engine: Optional[str] = None,
        journal: Optional[str] = None,
    ) -> Batch: ...
    def close(self) -> None: ...

def encode(feeds: Sequence[Tuple[str, np.ndarray]]) -> bytes: ...
def decode(output: bytes) -> List[Tuple[Optional[str], np.ndarray]]: ...
def verify_receipt(receipt: str) -> str: ...
