"""The Python package's costs, measured side by side in one run
(BENCHMARKS.md, "Python package"):

1. sess.map over the 450 shipped digits vs `p2pa batch` on the same inputs,
   through the same local workers: tasks/s, alternating, median of rounds.
2. sess.run of one digit (a tiny model, warm pool) vs `p2pa submit`'s own
   elapsed_ms (the task, without the process start and discovery).

Usage: python bench/python_pool.py [--rounds N] [--bin target/release/p2pa]
Workers: two `p2pa node` on host-local multicast (TTL 0), a private port.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import p2pa

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "models" / "digits.onnx"
INPUTS = REPO / "models" / "digits_test.jsonl"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--calls", type=int, default=400, help="sess.run calls (and 1/4 as many submits)")
    ap.add_argument("--bin", default=str(REPO / "target" / "release" / "p2pa"))
    ap.add_argument("--port", type=int, default=24890)
    a = ap.parse_args()
    net = ["--multicast-ttl", "0", "--multicast-port", str(a.port), "--no-mdns"]
    tmp = Path(tempfile.mkdtemp(prefix="p2pa-pybench-"))
    workers = [
        subprocess.Popen([a.bin, "--data-dir", str(tmp / f"w{i}"), *net, "node"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for i in range(2)
    ]
    try:
        time.sleep(1.0)
        run(a, net, tmp)
    finally:
        for w in workers:
            w.terminate()
            w.wait(timeout=10)


def run(a: argparse.Namespace, net: list, tmp: Path) -> None:
    rows = [json.loads(l) for l in INPUTS.read_text().splitlines() if l.strip()]
    x = np.array([r["input"] for r in rows], dtype=np.float32)
    feeds = [{"input": row[None]} for row in x]
    sess = p2pa.InferenceSession(MODEL, multicast_ttl=0, multicast_port=a.port, mdns=False)
    sess.map(feeds[:50], progress=False)  # the workers fetch the model
    # 1800 tasks (the digits four times); each side's fixed costs (process
    # start, discovery, the wait for the rest of the pool) are taken out by
    # timing a one-task run too: rate = 1799 / (t(1800) - t(1)).
    many = tmp / "inputs.jsonl"
    many.write_text("".join(l + "\n" for l in INPUTS.read_text().splitlines() if l.strip()) * 4)
    one_line = tmp / "one.jsonl"
    one_line.write_text(INPUTS.read_text().splitlines()[0] + "\n")
    feeds = feeds * 4
    n = len(feeds)

    def children_cpu() -> float:
        r = resource.getrusage(resource.RUSAGE_CHILDREN)
        return r.ru_utime + r.ru_stime

    def batch(inputs: Path, r: int) -> tuple:
        out = tmp / f"batch{r}-{inputs.stem}.jsonl"
        t, c = time.perf_counter(), children_cpu()
        subprocess.run([a.bin, *net, "batch", "--kind", "infer", "--model", str(MODEL),
                        "--inputs", str(inputs), "--out", str(out)],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return time.perf_counter() - t, children_cpu() - c

    def pymap(k: int) -> tuple:
        t, c = time.perf_counter(), time.process_time()
        sess.map(feeds[:k], progress=False)
        return time.perf_counter() - t, time.process_time() - c

    def rate(big: tuple, small: tuple) -> tuple:
        """tasks/s and requester CPU µs per task, the one-task run taken out."""
        return ((n - 1) / max(big[0] - small[0], 1e-6), (big[1] - small[1]) / (n - 1) * 1e6)

    py, cli = [], []
    for r in range(a.rounds):  # alternating, so both see the same machine
        py.append(rate(pymap(n), pymap(1)))
        cli.append(rate(batch(many, r), batch(one_line, r)))
    med = lambda rows, i: statistics.median(x[i] for x in rows)
    print(f"map over {n} digits (fixed costs taken out on both, median of {a.rounds}): "
          f"sess.map {med(py, 0):.0f} tasks/s, {med(py, 1):.0f} µs requester CPU/task; "
          f"p2pa batch {med(cli, 0):.0f} tasks/s, {med(cli, 1):.0f} µs/task; "
          f"throughput ratio {med(py, 0) / med(cli, 0):.2f}")

    one = {"input": x[:1]}
    for _ in range(20):
        sess.run(None, one)
    calls, submits = [], []
    for _ in range(a.rounds):  # interleaved, so both see the same machine
        for _ in range(a.calls // a.rounds):
            t = time.perf_counter()
            sess.run(None, one)
            calls.append((time.perf_counter() - t) * 1e3)
        for _ in range(max(a.calls // a.rounds // 4, 2)):
            o = subprocess.run([a.bin, *net, "submit", "--kind", "infer", "--model", str(MODEL),
                                "--input", json.dumps(rows[0]["input"]), "--json"],
                               check=True, capture_output=True, text=True)
            submits.append(json.loads(o.stdout)["elapsed_ms"])
    run_ms, sub_ms = statistics.median(calls), statistics.median(submits)
    print(f"one digit: sess.run median {run_ms:.3f} ms (wall, n={len(calls)}), p2pa submit's task "
          f"(its elapsed_ms, n={len(submits)}) median {sub_ms:.3f} ms, ratio {run_ms / sub_ms:.2f}")
    sess.close()


if __name__ == "__main__":
    sys.exit(main())
