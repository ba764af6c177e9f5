"""Writes the hostile ONNX fixtures the isolation tests run: each is valid
ONNX that hurts the runtime, not the parser. Run with the `onnx` package
(`pip install onnx`); the outputs are committed, so tests need no Python.

- div_zero.onnx: x (i64 [1]) / 0 as integers: tract panics (divide by zero).
- huge_alloc.onnx: the outer product of x (f32 [n]) with itself: n = 2^18
  (a 1 MiB input) asks for 256 GiB.
- slow.onnx: the same [n, n] product, then ten chained MatMuls: minutes of
  CPU for n = 4096, milliseconds for n = 8.
- big_output.onnx: the [n, n] outer product itself as the output: an 8 KiB
  input (n = 2048) returns 16 MiB.
"""
import onnx
from onnx import TensorProto, helper as h

def save(name, nodes, inputs, outputs, inits=()):
    g = h.make_graph(nodes, name, inputs, outputs, initializer=list(inits))
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 13)], producer_name="p2pa-hostile")
    m.ir_version = 7
    onnx.checker.check_model(m)
    onnx.save(m, f"{name}.onnx")

i64 = lambda n, s: helper_vi(n, TensorProto.INT64, s)
def helper_vi(n, t, s):
    return h.make_tensor_value_info(n, t, s)

save("div_zero",
     [h.make_node("Div", ["x", "zero"], ["y"])],
     [i64("x", [1])], [i64("y", [1])],
     [h.make_tensor("zero", TensorProto.INT64, [1], [0])])
f32 = lambda n, s: helper_vi(n, TensorProto.FLOAT, s)
axes = lambda name, v: h.make_tensor(name, TensorProto.INT64, [1], [v])
outer = [h.make_node("Unsqueeze", ["x", "ax1"], ["col"]),
         h.make_node("Unsqueeze", ["x", "ax0"], ["row"]),
         h.make_node("MatMul", ["col", "row"], ["m0"])]
save("huge_alloc", outer + [h.make_node("ReduceSum", ["m0"], ["y"], keepdims=0)],
     [f32("x", ["n"])], [f32("y", [])], [axes("ax0", 0), axes("ax1", 1)])
nodes = list(outer)
for i in range(10):
    nodes.append(h.make_node("MatMul", [f"m{i}", "m0"], [f"m{i+1}"]))
nodes.append(h.make_node("ReduceSum", ["m10"], ["y"], keepdims=0))
save("slow", nodes, [f32("x", ["n"])], [f32("y", [])], [axes("ax0", 0), axes("ax1", 1)])
save("big_output", outer, [f32("x", ["n"])], [f32("m0", ["n", "n"])], [axes("ax0", 0), axes("ax1", 1)])
