"""Local p2pa workers for the tests: `p2pa node` processes discovering
each other by host-local multicast (TTL 0, loopback) on a port of this
run's own, so nothing leaves the machine and parallel runs do not meet."""

from __future__ import annotations

import json
import os
import threading
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import List, Optional

import pytest

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "models"


def p2pa_bin() -> str:
    """The CLI: $P2PA_BIN, else the workspace's debug or release build."""
    env = os.environ.get("P2PA_BIN")
    if env:
        return env
    for profile in ("debug", "release"):
        p = REPO / "target" / profile / "p2pa"
        if p.exists():
            return str(p)
    found = shutil.which("p2pa")
    if found:
        return found
    pytest.exit("no p2pa binary: build it (cargo build -p p2pa) or set P2PA_BIN", returncode=2)


_BASE = 24000 + (os.getpid() % 400) * 40
_PORTS = iter(range(_BASE, _BASE + 40))


def fresh_port() -> int:
    return next(_PORTS)


class Worker:
    """One `p2pa node` process."""

    def __init__(self, port: int, extra: List[str] = ()):
        self.dir = tempfile.mkdtemp(prefix="p2pa-py-worker-")
        args = [p2pa_bin(), "--data-dir", self.dir, "--multicast-ttl", "0",
                "--multicast-port", str(port), "--no-mdns", "node", "--json", *extra]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"worker did not start: {' '.join(args)}")
        start = json.loads(line)
        self.id: str = start["node_id"]
        self.addr: str = start["addr"]
        # Drained all the time: a full pipe would stall the node.
        self._seen: List[dict] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        for line in self.proc.stdout:
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            with self._lock:
                self._seen.append(ev)

    def event(self, name: str, timeout: float) -> Optional[dict]:
        """The first event called `name` this worker printed, waiting up to
        `timeout` seconds for it, or None."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                found = next((e for e in self._seen if e.get("event") == name), None)
            if found is not None or time.monotonic() >= deadline:
                return found
            time.sleep(0.02)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)


class Net:
    """A port of this test's own and the workers on it."""

    def __init__(self) -> None:
        self.port = fresh_port()
        self.workers: List[Worker] = []

    def worker(self, *extra: str) -> Worker:
        w = Worker(self.port, list(extra))
        self.workers.append(w)
        return w

    def options(self, **kw):
        """Pool options for this net (host-local multicast on its port)."""
        return {"multicast_ttl": 0, "multicast_port": self.port, "mdns": False, **kw}

    def stop(self) -> None:
        for w in self.workers:
            w.stop()


@pytest.fixture
def net():
    n = Net()
    yield n
    n.stop()


@pytest.fixture(scope="module")
def pool_net():
    """Two workers shared by a module's tests."""
    n = Net()
    n.worker("--workers", "2")
    n.worker("--workers", "2")
    yield n
    n.stop()


def digits():
    """The shipped test set: (inputs [450, 64] f32, labels [450])."""
    import numpy as np

    rows = [json.loads(l) for l in (MODELS / "digits_test.jsonl").read_text().splitlines() if l.strip()]
    x = np.array([r["input"] for r in rows], dtype=np.float32)
    y = np.array([r["label"] for r in rows], dtype=np.int64)
    return x, y
