#!/usr/bin/env python3
"""Writes a heavier MLP for timing only (random weights, not a classifier):
64 -> 1536 -> 1536 -> 10, about 2.5 M multiply-adds per image, so one
inference takes on the order of a millisecond. Used by bench/run.sh to measure
the per-task protocol overhead for a model of >= 1 ms; not committed (9 MB).

    python3 models/make_bench_model.py OUT.onnx
"""
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

rng = np.random.default_rng(0)
dims = [64, 1536, 1536, 10]
inits, nodes, prev = [], [], "input"
for i, (a, b) in enumerate(zip(dims, dims[1:])):
    w = (rng.standard_normal((a, b)) / np.sqrt(a)).astype(np.float32)
    inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(np.zeros(b, np.float32), f"b{i}")]
    nodes.append(helper.make_node("Gemm", [prev, f"w{i}", f"b{i}"], [f"h{i}"]))
    prev = f"h{i}"
    if i < len(dims) - 2:
        nodes.append(helper.make_node("Relu", [prev], [f"r{i}"]))
        prev = f"r{i}"
nodes.append(helper.make_node("ArgMax", [prev], ["label"], axis=1, keepdims=0))
graph = helper.make_graph(
    nodes,
    "p2pa_bench_mlp",
    [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 64])],
    [helper.make_tensor_value_info("label", TensorProto.INT64, ["N"])],
    inits,
)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="p2pa")
model.ir_version = 8
onnx.save(model, sys.argv[1])
