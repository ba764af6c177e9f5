#!/usr/bin/env python3
"""Trains the digits classifier that p2pa ships, and exports it to ONNX.

Data: scikit-learn's bundled 8x8 handwritten digits (1 797 images, no
download). Model: a 64-32-10 multilayer perceptron. The ONNX graph is built
by hand from the trained weights with only Gemm, Relu, Softmax and ArgMax, so
any ONNX runtime (tract included) runs it:

    input          float32 [N, 64]   pixel values 0..16, as in the data set
    probabilities  float32 [N, 10]
    label          int64   [N]

Writes digits.onnx and digits_test.jsonl (the held-out test split, one
{"input": [64 floats], "label": n} per line) next to this script.

    pip install scikit-learn onnx && python3 models/train_digits.py
"""
import json
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier

HERE = os.path.dirname(os.path.abspath(__file__))

digits = load_digits()
x = digits.data.astype(np.float32)
y = digits.target.astype(np.int64)
x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, random_state=42, stratify=y)

clf = MLPClassifier(hidden_layer_sizes=(32,), max_iter=600, random_state=0)
clf.fit(x_train / 16.0, y_train)
print(f"test accuracy (scikit-learn): {clf.score(x_test / 16.0, y_test):.4f}")

# Fold the /16 input scaling into the first layer: W1' = W1 / 16.
w1 = (clf.coefs_[0] / 16.0).astype(np.float32)
b1 = clf.intercepts_[0].astype(np.float32)
w2 = clf.coefs_[1].astype(np.float32)
b2 = clf.intercepts_[1].astype(np.float32)

nodes = [
    helper.make_node("Gemm", ["input", "w1", "b1"], ["h1"]),
    helper.make_node("Relu", ["h1"], ["a1"]),
    helper.make_node("Gemm", ["a1", "w2", "b2"], ["logits"]),
    helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
    helper.make_node("ArgMax", ["logits"], ["label"], axis=1, keepdims=0),
]
graph = helper.make_graph(
    nodes,
    "p2pa_digits",
    [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 64])],
    [
        helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 10]),
        helper.make_tensor_value_info("label", TensorProto.INT64, ["N"]),
    ],
    [numpy_helper.from_array(a, n) for a, n in [(w1, "w1"), (b1, "b1"), (w2, "w2"), (b2, "b2")]],
)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="p2pa")
model.ir_version = 8
onnx.checker.check_model(model)
onnx.save(model, os.path.join(HERE, "digits.onnx"))

# The same arithmetic in numpy, as a check of the export.
logits = np.maximum(x_test @ w1 + b1, 0) @ w2 + b2
pred = logits.argmax(axis=1)
assert (pred == clf.predict(x_test / 16.0)).all(), "exported graph disagrees with scikit-learn"
print(f"test accuracy (exported graph): {(pred == y_test).mean():.4f}")

with open(os.path.join(HERE, "digits_test.jsonl"), "w") as f:
    for xi, yi in zip(x_test, y_test):
        f.write(json.dumps({"input": [float(v) for v in xi], "label": int(yi)}) + "\n")
print(f"wrote digits.onnx ({os.path.getsize(os.path.join(HERE, 'digits.onnx'))} bytes) and {len(y_test)} test images")
