"""Token selection as ONNX graphs, so a GPU engine can pick tokens where its logits are.

On CUDA a decode step's forward pass is fast and host-side selection is what it waits for
(bench/results/gpu_check.md: at n=64, 23.7 of a 33.1 ms step, with the [64, 49152] logits copied
to the host first). These graphs take the decoder's logits as they are on the device and return
one token id and its log-probability per row, so only a few bytes per row cross to the host.

They do what :func:`router.engine.sampling.select_tokens` does for sampling (greedy stays on the
host: an argmax over one row is cheap there):

- ``full`` (no top-k, no top-p): the inverse CDF over the vocabulary in index order, as the host's
  vectorised path does, so a row given the host's uniform picks the host's token, up to float32
  rounding at the boundary between two tokens (the host sums in float64).
- ``truncated`` (top-k and/or top-p): the vocabulary sorted by probability, the top ``k`` kept,
  then the smallest prefix of the renormalised top-k mass reaching ``top_p`` (a token is kept
  when the mass before it is below ``top_p``: the host's ``searchsorted(mass, top_p) + 1``), then
  the inverse CDF over what is kept, in that sorted order, as the host's per-row path does.

Both graphs take the same inputs: ``logits`` [rows, width, vocab] (the decoder's output; the last
position is used), ``rows`` int64 [k] (which rows to select for), ``uniforms`` float64 [k] (one
draw per row from the host's per-row generators, so a seed means the same on both paths),
``temperature`` and ``inv_temperature`` (float32 [1]: the full graph multiplies, the truncated
one divides, as the host's two paths do), ``top_k`` and ``top_p`` (float64 [1]; top_k = vocab
for none, top_p > 1 for none). The weights are float64 from the exponential on. Outputs:
``tokens`` int64 [k] and ``logprobs`` float32 [k] (log-softmax of the raw logits, whatever the
temperature). The vocabulary size is read from the logits' shape, so one
pair of graphs serves every model; they are small, and committed with the sha256 the engine
checks (``router/engine/artifacts``, written by ``scripts/build_token_selector.py``).
"""

from __future__ import annotations

from typing import Any

OPSET = 18
KINDS = ("full", "truncated")
INPUTS = ("logits", "rows", "uniforms", "temperature", "inv_temperature", "top_k", "top_p")
OUTPUTS = ("tokens", "logprobs")


def selector_model(kind: str) -> Any:
    """The ``onnx.ModelProto`` of one selector (``kind`` in :data:`KINDS`)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    if kind not in KINDS:
        raise ValueError(f"unknown selector kind {kind!r}; known: {', '.join(KINDS)}")
    nodes: list[onnx.NodeProto] = []
    consts = {
        "axis1": np.array([1], dtype=np.int64),
        "last": np.array([-1], dtype=np.int64),
        "end": np.array([np.iinfo(np.int64).max], dtype=np.int64),
        "two": np.array([2], dtype=np.int64),
        "one": np.array([1.0], dtype=np.float64),
    }

    def node(op: str, inputs: list[str], output: str, **attrs: Any) -> str:
        nodes.append(helper.make_node(op, inputs, [output], name=output, **attrs))
        return output

    # The last position of the chosen rows: [k, vocab].
    picked = node("Gather", ["logits", "rows"], "picked", axis=0)
    last = node("Slice", [picked, "last", "end", "axis1"], "last_position")
    x = node("Squeeze", [last, "axis1"], "x")
    top = node("ReduceMax", [x, "axis1"], "top", keepdims=1)
    shifted = node("Sub", [x, top], "shifted")
    log_norm = node("Log", [node("ReduceSum", [node("Exp", [shifted], "exp_shifted"), "axis1"], "norm", keepdims=1)],
                    "log_norm")
    # Scaled as the host scales (float32), then float64 from the weights on: a float32 running sum
    # over 49k entries drifts by more than one token's share of a flat distribution.
    if kind == "full":
        scaled = node("Mul", [shifted, "inv_temperature"], "scaled")
    else:
        scaled = node("Div", [shifted, "temperature"], "scaled")
    weights = node("Exp", [node("Cast", [scaled], "scaled_f64", to=TensorProto.DOUBLE)], "weights")
    shape = node("Shape", [weights], "shape")
    vocab = node("Slice", [shape, "axis1", "two"], "vocab")  # int64 [1]
    if kind == "full":
        support, order = weights, None
        # At most the last token of the vocabulary (u * total can round up to total).
        count = node("Cast", [vocab], "vocab_f", to=TensorProto.DOUBLE)
    else:
        ranked, order = "ranked", "order"
        nodes.append(helper.make_node("TopK", [weights, vocab], [ranked, order], name="sort", axis=1, largest=1,
                                      sorted=1))
        # Rank of each sorted entry (0, 1, ...): exact in float32 for any real vocabulary.
        ones = node("ConstantOfShape", [shape], "ones", value=numpy_helper.from_array(consts["one"]))
        rank = node("Sub", [node("CumSum", [ones, "axis1"], "count"), "one"], "rank")
        in_k = node("Cast", [node("Less", [rank, "top_k"], "below_k")], "in_k", to=TensorProto.DOUBLE)
        top_k_mass = node("Mul", [ranked, in_k], "top_k_weights")
        running = node("CumSum", [top_k_mass, "axis1"], "running")
        total_k = node("ReduceSum", [top_k_mass, "axis1"], "total_k", keepdims=1)
        before = node("Div", [node("Sub", [running, top_k_mass], "mass_before_raw"), total_k], "mass_before")
        in_p = node("Cast", [node("Less", [before, "top_p"], "below_p")], "in_p", to=TensorProto.DOUBLE)
        support = node("Mul", [top_k_mass, in_p], "support")
        count = node("ReduceSum", [node("Mul", [in_k, in_p], "kept"), "axis1"], "kept_count", keepdims=1)
    cdf = node("CumSum", [support, "axis1"], "cdf")
    total = node("ReduceSum", [support, "axis1"], "total", keepdims=1)
    target = node("Mul", [node("Unsqueeze", ["uniforms", "axis1"], "u"), total], "target")
    passed = node("ReduceSum", [node("Cast", [node("LessOrEqual", [cdf, target], "le")], "le_f", to=TensorProto.DOUBLE),
                                "axis1"], "passed", keepdims=1)
    index = node("Cast", [node("Min", [passed, node("Sub", [count, "one"], "last_index")], "index_f")], "index",
                 to=TensorProto.INT64)
    token = index if order is None else node("GatherElements", [order, index], "token", axis=1)
    token_shifted = node("GatherElements", [shifted, token], "token_shifted", axis=1)
    logprob = node("Sub", [token_shifted, log_norm], "token_logprob")
    nodes.append(helper.make_node("Squeeze", [token, "axis1"], ["tokens"], name="tokens"))
    nodes.append(helper.make_node("Squeeze", [logprob, "axis1"], ["logprobs"], name="logprobs"))
    nodes = _used(nodes, {"tokens", "logprobs"})

    scalars = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1]) for n in ("temperature", "inv_temperature")]
    scalars += [helper.make_tensor_value_info(n, TensorProto.DOUBLE, [1]) for n in ("top_k", "top_p")]
    graph = helper.make_graph(
        nodes,
        f"token_selector_{kind}",
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["rows_in", "width", "vocab"]),
         helper.make_tensor_value_info("rows", TensorProto.INT64, ["k"]),
         helper.make_tensor_value_info("uniforms", TensorProto.DOUBLE, ["k"]),
         *scalars],
        [helper.make_tensor_value_info("tokens", TensorProto.INT64, ["k"]),
         helper.make_tensor_value_info("logprobs", TensorProto.FLOAT, ["k"])],
        initializer=[numpy_helper.from_array(v, name=k) for k, v in consts.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="router")
    model.ir_version = 9
    onnx.checker.check_model(model, full_check=True)
    return model


def _used(nodes: list, outputs: set[str]) -> list:
    """``nodes`` without those whose outputs nothing reads (in order)."""
    needed, kept = set(outputs), []
    for n in reversed(nodes):
        if any(o in needed for o in n.output):
            kept.append(n)
            needed.update(n.input)
    return list(reversed(kept))
