"""p2pa.InferenceSession and p2pa.Pool against local `p2pa node` workers,
compared with onnxruntime where it is installed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import p2pa
from conftest import MODELS, digits, p2pa_bin

try:
    import onnxruntime as ort
except ImportError:  # compared where it installs; said, never silent
    ort = None

needs_ort = pytest.mark.skipif(ort is None, reason="SKIPPED: onnxruntime is not installed")


def test_run_has_onnxruntimes_signature_and_answers(pool_net):
    x, _ = digits()
    with p2pa.InferenceSession(MODELS / "digits.onnx", **pool_net.options()) as sess:
        [i] = sess.get_inputs()
        assert (i.name, i.type, i.shape) == ("input", "tensor(float)", [None, 64])
        assert [o.name for o in sess.get_outputs()] == ["probabilities", "label"]
        probs, label = sess.run(None, {"input": x[:5]})
        assert probs.shape == (5, 10) and probs.dtype == np.float32
        assert label.dtype == np.int64 and label.shape == (5,)
        assert np.array_equal(label, probs.argmax(axis=1))
        [only] = sess.run(["label"], {"input": x[:3]})
        assert np.array_equal(only, label[:3])
        assert sess.last_receipt.worker in {w.id for w in pool_net.workers}
        assert "completed" in sess.last_receipt.verify()


@needs_ort
@pytest.mark.parametrize("model,feed", [
    ("digits.onnx", lambda: {"input": digits()[0][:32]}),
    ("ppocr_cls.onnx", lambda: {"x": np.load(MODELS / "ppocr_cls_input.npy")}),
])
def test_outputs_match_onnxruntime(pool_net, model, feed):
    f = feed()
    ref = ort.InferenceSession(str(MODELS / model), providers=["CPUExecutionProvider"])
    with p2pa.Pool(**pool_net.options()) as pool:
        got = pool.session(MODELS / model).run(None, f)
    want = ref.run(None, f)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and g.shape == w.shape
        if g.dtype.kind == "f":
            np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)
        else:
            np.testing.assert_array_equal(g, w)


def test_map_classifies_the_450_digits_over_both_workers_in_input_order(pool_net):
    x, y = digits()
    with p2pa.InferenceSession(MODELS / "digits.onnx", **pool_net.options()) as sess:
        outs = sess.map([{"input": row[None]} for row in x], progress=False)
        labels = np.array([o[1][0] for o in outs])
        assert len(outs) == 450
        accuracy = float(np.mean(labels == y))
        assert accuracy == pytest.approx(0.9733, abs=0.001), accuracy
        stacked = sess.map([{"input": row[None]} for row in x], batch_size=32, progress=False)
        assert np.array_equal(np.array([o[1][0] for o in stacked]), labels)
        workers = {r.worker for _, _, r in sess.imap_unordered([{"input": row[None]} for row in x[:64]])}
        assert workers == {w.id for w in pool_net.workers}, workers
        if ort is not None:
            ref = ort.InferenceSession(str(MODELS / "digits.onnx")).run(None, {"input": x})[1]
            assert np.array_equal(labels, ref)


def test_a_tensor_beyond_one_frame_travels_both_ways(pool_net):
    x, _ = digits()
    big = np.tile(x, (3, 1))  # [1350, 64] f32: 345 600 bytes in, 54 000 out, frames are 64 KiB
    with p2pa.InferenceSession(MODELS / "digits.onnx", **pool_net.options()) as sess:
        probs, label = sess.run(None, {"input": big})
    assert probs.shape == (1350, 10)
    assert np.array_equal(label[:450], label[450:900])
    assert "completed" in sess.last_receipt.verify()


def test_bad_input_is_refused_before_anything_is_sent(net):
    # No worker at all on this net: a check that waited for the network
    # would raise NoPeersError instead.
    x, _ = digits()
    sess = p2pa.InferenceSession(MODELS / "digits.onnx", **net.options(wait=0.2))
    try:
        with pytest.raises(p2pa.InputError, match=r"expects \[N, 64\] \(f32\), got \[2, 64\] \(f64\)"):
            sess.run(None, {"input": x[:2].astype(np.float64)})
        with pytest.raises(p2pa.InputError, match=r"expects \[N, 64\].*got \[2, 63\]"):
            sess.run(None, {"input": x[:2, :63]})
        with pytest.raises(p2pa.InputError, match="no input named \"pixels\""):
            sess.run(None, {"pixels": x[:2]})
        with pytest.raises(p2pa.InputError, match="int8 is not one p2pa carries"):
            sess.run(None, {"input": x[:2].astype(np.int8)})
        with pytest.raises(p2pa.InputError, match="no output named 'score'"):
            sess.run(["score"], {"input": x[:2]})
        # One bad feed among many: none is sent.
        with pytest.raises(p2pa.InputError):
            sess.map([{"input": x[:1]}, {"input": x[:1]}, {"input": x[:1, :5]}])
        with pytest.raises(p2pa.InputError, match="not an ONNX model"):
            p2pa.InferenceSession(b"not a model", **net.options())
        with pytest.raises(p2pa.NoPeersError):
            sess.run(None, {"input": x[:1]})
    finally:
        sess.close()


def test_no_peers_is_an_exception_not_a_hang(net):
    x, _ = digits()
    t = time.monotonic()
    with p2pa.InferenceSession(MODELS / "digits.onnx", **net.options(wait=0.5)) as sess:
        with pytest.raises(p2pa.NoPeersError, match="no peers found that run `infer`"):
            sess.run(None, {"input": x[:1]})
        with pytest.raises(p2pa.NoPeersError):
            sess.map([{"input": x[:1]}])
    assert time.monotonic() - t < 10
    with p2pa.Pool(peers=["127.0.0.1:9"], wait=0.5) as pool:
        with pytest.raises(p2pa.NoPeersError, match="could not reach a node at 127.0.0.1:9"):
            pool.submit("echo", "hi")


def test_a_task_that_fails_everywhere_says_where_and_why(pool_net):
    with p2pa.Pool(**pool_net.options()) as pool:
        sess = pool.session(MODELS / "hostile" / "div_zero.onnx")
        with pytest.raises(p2pa.TaskFailedError) as e:
            sess.run(None, {"x": np.array([7], dtype=np.int64)})
    assert e.value.worker in {w.id for w in pool_net.workers}
    assert e.value.reason and e.value.status == "failed", e.value.reason
    assert isinstance(e.value, p2pa.Error)


def test_a_worker_killed_mid_batch_loses_nothing(net):
    a = net.worker("--workers", "1")
    net.worker("--workers", "1")
    x, y = digits()
    seen = []
    with p2pa.InferenceSession(MODELS / "digits.onnx", **net.options()) as sess:
        for i, outs, receipt in sess.imap_unordered([{"input": row[None]} for row in x], concurrency=8):
            seen.append((i, int(outs[1][0]), receipt.worker))
            if len(seen) == 40:
                a.kill()
    assert sorted(i for i, _, _ in seen) == list(range(450))  # each once
    assert np.mean([label == y[i] for i, label, _ in seen]) == pytest.approx(0.9733, abs=0.001)
    late = {w for _, _, w in seen[60:]}
    assert a.id not in late, "the killed worker answered after it died"


def test_journal_resumes_and_p2pa_verify_checks_it(pool_net, tmp_path):
    x, _ = digits()
    journal = tmp_path / "out.jsonl"
    feeds = [{"input": row[None]} for row in x[:60]]
    with p2pa.InferenceSession(MODELS / "digits.onnx", **pool_net.options()) as sess:
        first = sess.map(feeds[:25], journal=journal, progress=False)
        assert len(journal.read_text().splitlines()) == 25
        # A re-run of the whole cell: the 25 done are read back, 35 run.
        again = sess.map(feeds, journal=journal, progress=False)
        lines = [json.loads(l) for l in journal.read_text().splitlines()]
        assert sorted(l["line"] for l in lines) == list(range(1, 61))
        for a, b in zip(first, again[:25]):
            np.testing.assert_allclose(a[0], b[0], rtol=1e-6)
            assert np.array_equal(a[1], b[1])
        # Another batch's journal is refused, nothing run.
        with pytest.raises(p2pa.Error, match="holds results of another batch"):
            sess.map([{"input": x[100:101]}], journal=journal, progress=False)
    v = subprocess.run([p2pa_bin(), "verify", str(journal)], capture_output=True, text=True, timeout=60)
    assert v.returncode == 0, v.stdout + v.stderr
    assert "60 receipt(s) verified, 0 failed" in v.stderr


def test_receipts_verify_offline_and_a_forged_one_does_not(pool_net):
    with p2pa.Pool(**pool_net.options()) as pool:
        r = pool.submit("hash", b"abc")
    assert r.output == b"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert r.worker in {w.id for w in pool_net.workers}
    assert "completed" in r.receipt.verify()
    flip = lambda h: ("7" if h[0] != "7" else "6") + h[1:]
    for field in ("output_inline_hex", "signature", "worker"):
        d = r.receipt.to_dict()
        d[field] = flip(d[field])
        with pytest.raises(p2pa.ReceiptError):
            p2pa.Receipt(json.dumps(d)).verify()


def test_one_pool_serves_several_threads(pool_net):
    x, _ = digits()
    errors = []
    results = {}
    with p2pa.Pool(**pool_net.options()) as pool:
        sess = pool.session(MODELS / "digits.onnx")

        def work(k):
            try:
                results[k] = [sess.run(["label"], {"input": x[k * 10:(k + 1) * 10]})[0] for _ in range(5)]
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(e)

        threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        whole = sess.run(["label"], {"input": x[:40]})[0]
    assert not errors, errors
    for k in range(4):
        for r in results[k]:
            assert np.array_equal(r, whole[k * 10:(k + 1) * 10])


def test_peers_and_a_closed_pool(pool_net):
    pool = p2pa.Pool(**pool_net.options())
    ids = {p.node_id for p in pool.peers(wait=1.0) if "infer" in p.kinds}
    assert ids == {w.id for w in pool_net.workers}
    pool.close()
    pool.close()  # idempotent
    with pytest.raises(p2pa.Error, match="closed"):
        pool.submit("echo", "x")


CTRL_C = r"""
import sys, numpy as np, p2pa
sess = p2pa.InferenceSession(sys.argv[1], multicast_ttl=0, multicast_port=int(sys.argv[2]), mdns=False)
print("started", flush=True)
try:
    sess.run(None, {"x": np.full(4096, 0.01, dtype=np.float32)})
except KeyboardInterrupt:
    print("interrupted", flush=True)
    raise
"""


def test_ctrl_c_cancels_the_task_on_its_worker(net, tmp_path):
    w = net.worker("--workers", "1")
    script = tmp_path / "ctrl_c.py"
    script.write_text(CTRL_C)
    child = subprocess.Popen([sys.executable, str(script), str(MODELS / "hostile" / "slow.onnx"), str(net.port)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "started"
    # The task reaches the worker (minutes of CPU), then Ctrl-C.
    assert w.event("task_started", 30) is not None, "the task never started on the worker"
    child.send_signal(2)
    out, err = child.communicate(timeout=20)
    assert "interrupted" in out and "KeyboardInterrupt" in err, err
    # The worker is told and stops the job (its model process killed), well
    # before its minutes of CPU.
    finished = w.event("task_done", 15)
    assert finished is not None, "the job still runs 15 s after Ctrl-C"
    assert finished["status"] in ("cancelled", "failed") and finished["duration_ms"] < 15000, finished
    # And the interrupted process said goodbye on its way out.
    gone = w.event("disconnected", 15)
    assert gone is not None and "goodbye" in gone["reason"], gone


def test_every_dtype_the_cli_carries_round_trips_through_the_tensor_format():
    arrays = [
        np.arange(6, dtype=np.float32).reshape(2, 3) / 7,
        np.array([0.1, -2.5], dtype=np.float64),
        np.array([[1.5, -0.25]], dtype=np.float16),
        np.array([1, -2, 1 << 40], dtype=np.int64),
        np.array([[-7]], dtype=np.int32),
        np.array([0, 255], dtype=np.uint8),
        np.array([True, False, True]),
        np.array(3.5, dtype=np.float32),  # rank 0
        np.arange(12, dtype=np.float32).reshape(3, 4).T,  # not C-contiguous
    ]
    names = [f"t{i}" for i in range(len(arrays))]
    back = p2pa._native.decode(p2pa._native.encode(list(zip(names, arrays))))
    assert [n for n, _ in back] == names
    for (_, b), a in zip(back, arrays):
        assert b.dtype == a.dtype and b.shape == a.shape
        np.testing.assert_array_equal(b, a)
        assert b.flags.writeable
    with pytest.raises(p2pa.InputError, match="complex128 is not one p2pa carries"):
        p2pa._native.encode([("z", np.zeros(2, dtype=complex))])
    with pytest.raises(p2pa.InputError, match="expected a numpy array"):
        p2pa._native.encode([("z", [1, 2])])


def test_it_runs_inside_a_running_event_loop_as_a_notebook_has(pool_net):
    import asyncio

    x, _ = digits()

    async def cell():
        # Jupyter runs cells inside an asyncio loop; p2pa has no loop of its own.
        with p2pa.InferenceSession(MODELS / "digits.onnx", **pool_net.options()) as sess:
            return sess.run(["label"], {"input": x[:4]})[0]

    assert asyncio.run(cell()).shape == (4,)


def test_map_shows_a_progress_bar_when_asked(pool_net, capsys):
    pytest.importorskip("tqdm", reason="SKIPPED: tqdm is not installed")
    x, _ = digits()
    with p2pa.InferenceSession(MODELS / "digits.onnx", **pool_net.options()) as sess:
        sess.map([{"input": row[None]} for row in x[:30]], progress=True)
        err = capsys.readouterr().err
        assert "30/30" in err, err
        sess.map([{"input": row[None]} for row in x[:30]], progress=False)
        assert "30/30" not in capsys.readouterr().err
