"""Helper of scripts/real-models.sh (runs in its venv: numpy, onnxruntime).

  gen DIR         write the seeded inputs of every model as .npy files, the
                  batch input lines naming them, and onnxruntime's outputs
  check DIR M     compare p2pa's .npy outputs of model M with onnxruntime's:
                  floats within 1e-4 relative (absolute near zero), integers
                  exactly; exit 1 on any mismatch
  time DIR M N    onnxruntime alone, one thread: median ms per inference
                  over N runs on the model's first case
"""
import json, os, sys, time
import numpy as np
import onnxruntime as ort

# name -> (model file, [(input name, shape, dtype)] per case); cases vary
# the symbolic dimensions (height, width, batch) the models leave open.
MODELS = {
    "ppocr_det": ("ch_PP-OCRv4_det_infer.onnx", [
        [("x", (1, 3, 320, 320), "f32")],      # 1.2 MB in, 0.4 MB out
        [("x", (1, 3, 640, 640), "f32")],      # 4.9 MB in, 1.6 MB out
        [("x", (1, 3, 480, 640), "f32")],
    ]),
    "ppocr_rec": ("ch_PP-OCRv4_rec_infer.onnx", [  # SVTR: attention over the text line
        [("x", (1, 3, 48, 320), "f32")],
        [("x", (2, 3, 48, 480), "f32")],       # 1.06 MB out per 40 steps x 6625 classes
    ]),
    "ppocr_cls": ("ch_ppocr_mobile_v2.0_cls_infer.onnx", [
        [("x", (1, 3, 48, 192), "f32")],       # 110 KB: over one frame
        [("x", (6, 3, 48, 192), "f32")],
    ]),
    "magika": ("model.onnx", [                 # content-type model over raw bytes
        [("bytes", (1, 2048), "i32")],
        [("bytes", (16, 2048), "i32")],
    ]),
}

def case_input(rng, name, shape, dtype):
    if dtype == "i32":
        return rng.integers(0, 257, shape).astype(np.int32)
    return rng.random(shape, dtype=np.float32)

def gen(root):
    for m, (f, cases) in MODELS.items():
        d = os.path.join(root, m)
        os.makedirs(d, exist_ok=True)
        sess = ort.InferenceSession(os.path.join(root, "models", f), providers=["CPUExecutionProvider"])
        outs = [o.name for o in sess.get_outputs()]
        rng = np.random.default_rng(sum(m.encode()))
        with open(os.path.join(d, "inputs.jsonl"), "w") as lines:
            for i, case in enumerate(cases, 1):
                feed = {n: case_input(rng, n, s, t) for n, s, t in case}
                if len(feed) == 1:
                    (n, x), = feed.items()
                    np.save(os.path.join(d, f"in{i}.npy"), x)
                    lines.write(json.dumps({"input": f"in{i}.npy"}) + "\n")
                else:
                    np.savez(os.path.join(d, f"in{i}.npz"), **feed)
                    lines.write(json.dumps({"input": f"in{i}.npz"}) + "\n")
                ref = sess.run(None, feed)
                np.savez(os.path.join(d, f"ref{i}.npz"), **dict(zip(outs, ref)))

def safe(n):
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in n)

def check(root, m):
    d = os.path.join(root, m)
    bad = 0
    n = len(MODELS[m][1])
    for i in range(1, n + 1):
        ref = np.load(os.path.join(d, f"ref{i}.npz"))
        for name in ref.files:
            a = ref[name]
            path = os.path.join(d, "out", str(i), safe(name) + ".npy")
            if not os.path.exists(path):
                print(f"  {m} line {i} {name}: MISSING {path}"); bad += 1; continue
            b = np.load(path)
            if a.shape != b.shape or a.dtype != b.dtype:
                print(f"  {m} line {i} {name}: shape/dtype {a.shape} {a.dtype} vs {b.shape} {b.dtype}"); bad += 1; continue
            if np.issubdtype(a.dtype, np.floating):
                err = float(np.max(np.abs(a - b) / np.maximum(1.0, np.maximum(np.abs(a), np.abs(b))))) if a.size else 0.0
                ok = err <= 1e-4
                print(f"  {m} line {i} {name} {a.shape}: max relative error {err:.2e} {'ok' if ok else 'FAIL'}")
            else:
                ok = bool(np.array_equal(a, b))
                print(f"  {m} line {i} {name} {a.shape}: {'equal' if ok else 'FAIL'}")
            bad += 0 if ok else 1
    return bad

def timing(root, m, n):
    f, cases = MODELS[m]
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1  # as tract: one core per inference
    sess = ort.InferenceSession(os.path.join(root, "models", f), opts, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(1)
    feed = {name: case_input(rng, name, s, t) for name, s, t in cases[0]}
    sess.run(None, feed)
    ts = []
    for _ in range(n):
        t = time.perf_counter(); sess.run(None, feed); ts.append((time.perf_counter() - t) * 1e3)
    print(f"{np.median(ts):.2f}")

if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "gen":
        gen(sys.argv[2])
    elif cmd == "check":
        sys.exit(1 if check(sys.argv[2], sys.argv[3]) else 0)
    elif cmd == "time":
        timing(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    elif cmd == "list":
        print(" ".join(MODELS))
    elif cmd == "file":
        print(MODELS[sys.argv[2]][0])
