"""Token selection as ONNX graphs, so a GPU engine can pick tokens where its logits are.

On CUDA a decode step's forward pass is fast and host-side selection is what it waits for
(bench/results/gpu_check.md: at n=64, 23.7 of a 33.1 ms step, with the [64, 49152] logits copied
to the host first). These graphs take the decoder's logits as they are on the device and return
one token id and its log-probability per row, so only a few bytes per row cross to the host.

They do what :func:`router.engine.sampling.select_tokens` does for sampling (greedy stays on the
host: an argmax over one row is cheap there):

- ``full`` (no top-k, no top-p): the host's two-level inverse CDF over the vocabulary in index
  order (block sums of :data:`BLOCK` tokens, the block the target falls in, a running sum inside
  it), so a row given the host's uniform picks the host's token.
- ``truncated`` (top-k and/or top-p): the :data:`POOL` most likely tokens, sorted; the top ``k``
  kept, then the smallest prefix of the renormalised top-k mass reaching ``top_p`` (a token is
  kept when the mass before it is below ``top_p``: the host's ``searchsorted(mass, top_p) + 1``),
  then the inverse CDF over what is kept, in that order, as the host's per-row path does. Output
  ``covered`` is 0 for a row whose nucleus does not end inside the pool: the engine then selects
  that step on the host, with the same uniforms.

No running sum is longer than BLOCK or POOL entries: ONNX Runtime's CUDA ``CumSum`` is quadratic
along its axis (over the whole vocabulary it took 24 ms per n=64 step on an H200). The weights
are float64 from the exponential on: float32 running sums drifted past token boundaries.

Inputs: ``logits`` [rows, width, vocab] (the decoder's output; the last position is used),
``rows`` int64 [k] (which rows to select for), ``uniforms`` float64 [k] (one draw per row from the
host's per-row generators, so a seed means the same on both paths), ``temperature`` and
``inv_temperature`` (float32 [1]: the full graph multiplies, the truncated one divides, as the
host's two paths do), ``top_k`` and ``top_p`` (float64 [1]; top_k = vocab for none, top_p > 1 for
none), and shapes the host computes (``shape_info`` int64 [4], ``limits`` float64 [2], ``ranks``
float64 [pool]; :meth:`router.engine.device_select.DeviceTokenSelector.select` fills them). Each
graph ignores the inputs it does not need. Outputs: ``tokens`` int64 [k], ``logprobs`` float32
[k] (log-softmax of the raw logits, whatever the temperature) and ``covered`` float64 [k]. One
pair of graphs serves every vocabulary size; they are small, and committed with the sha256 the
engine checks (``router/engine/artifacts``, written by ``scripts/build_token_selector.py``).
"""

from __future__ import annotations

from typing import Any

OPSET = 18
KINDS = ("full", "truncated")
BLOCK = 256  # the full graph's two-level CDF: blocks of this many tokens
POOL = 1024  # the truncated graph sorts only this many most likely tokens
INPUTS = ("logits", "rows", "uniforms", "temperature", "inv_temperature", "top_k", "top_p", "shape_info",
          "limits", "ranks")
OUTPUTS = ("tokens", "logprobs", "covered")


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
        "axis2": np.array([2], dtype=np.int64),
        "last": np.array([-1], dtype=np.int64),
        "end": np.array([np.iinfo(np.int64).max], dtype=np.int64),
        "one": np.array([1.0], dtype=np.float64),
        "block_size": np.array([float(BLOCK)], dtype=np.float64),
        "zero": np.array([0.0], dtype=np.float64),
        "zero_i": np.array([0], dtype=np.int64),
        "one_i": np.array([1], dtype=np.int64),
    }

    def node(op: str, inputs: list[str], output: str, **attrs: Any) -> str:
        nodes.append(helper.make_node(op, inputs, [output], name=output, **attrs))
        return output

    parts: set[str] = set()

    def part(name: str, i: int) -> str:  # element i of a host-given vector, as a [1] tensor (made once)
        out = f"{name}_{i}"
        if out not in parts:
            parts.add(out)
            consts[f"i{i}"] = np.array([i], dtype=np.int64)
            consts[f"j{i}"] = np.array([i + 1], dtype=np.int64)
            node("Slice", [name, f"i{i}", f"j{i}"], out)
        return out

    def count_le(values: str, bound: str, out: str, axis: str = "axis1") -> str:  # entries <= bound, keepdims
        le = node("Cast", [node("LessOrEqual", [values, bound], f"{out}_le")], f"{out}_f", to=TensorProto.DOUBLE)
        return node("ReduceSum", [le, axis], out, keepdims=1)

    # The last position of the chosen rows: [k, vocab].
    picked = node("Gather", ["logits", "rows"], "picked", axis=0)
    last = node("Slice", [picked, "last", "end", "axis1"], "last_position")
    x = node("Squeeze", [last, "axis1"], "x")
    top = node("ReduceMax", [x, "axis1"], "top", keepdims=1)
    shifted = node("Sub", [x, top], "shifted")
    log_norm = node("Log", [node("ReduceSum", [node("Exp", [shifted], "exp_shifted"), "axis1"], "norm", keepdims=1)],
                    "log_norm")
    # Scaled as the host scales (float32), then float64 from the weights on, as the host sums.
    if kind == "full":
        scaled = node("Mul", [shifted, "inv_temperature"], "scaled")
    else:
        scaled = node("Div", [shifted, "temperature"], "scaled")
    weights = node("Exp", [node("Cast", [scaled], "scaled_f64", to=TensorProto.DOUBLE)], "weights")
    u = node("Unsqueeze", ["uniforms", "axis1"], "u")
    # ONNX Runtime's CUDA CumSum costs O(n^2) along its axis (a 49k-token running sum took 24 ms for
    # 64 rows on an H200), so no running sum here is longer than BLOCK or POOL entries.
    if kind == "full":
        # The host's two-level inverse CDF (sampling._inverse_cdf): block sums, the block the
        # target falls in, then a running sum inside that block. shape_info = [k, blocks, BLOCK,
        # padding]; limits = [blocks - 1, vocab - 1].
        pads = node("Concat", ["zero_i", "zero_i", "zero_i", part("shape_info", 3)], "pads", axis=0)
        padded = node("Pad", [weights, pads], "padded")
        blocks_shape = node("Concat", [part("shape_info", 0), part("shape_info", 1), part("shape_info", 2)],
                            "blocks_shape", axis=0)
        blocks = node("Reshape", [padded, blocks_shape], "blocks")
        block_sums = node("ReduceSum", [blocks, "axis2"], "block_sums", keepdims=0)
        block_cdf = node("CumSum", [block_sums, "axis1"], "block_cdf")
        total = node("ReduceSum", [block_sums, "axis1"], "total", keepdims=1)
        target = node("Mul", [u, total], "target")
        hit = node("Min", [count_le(block_cdf, target, "blocks_passed"), part("limits", 0)], "hit")
        hit_i = node("Cast", [hit], "hit_i", to=TensorProto.INT64)
        before = node("GatherElements", [node("Sub", [block_cdf, block_sums], "block_start"), hit_i], "before", axis=1)
        gather_shape = node("Concat", [part("shape_info", 0), "one_i", part("shape_info", 2)], "gather_shape", axis=0)
        where = node("Expand", [node("Unsqueeze", [hit_i, "axis2"], "hit_3d"), gather_shape], "hit_block")
        block = node("Squeeze", [node("GatherElements", [blocks, where], "block_3d", axis=1), "axis1"], "block")
        inner = node("Add", [before, node("CumSum", [block, "axis1"], "block_running")], "inner")
        offset = node("Min", [count_le(inner, target, "inner_passed"),
                              node("Sub", ["block_size", "one"], "block_last")], "offset")
        index = node("Min", [node("Add", [node("Mul", [hit, "block_size"], "block_first"), offset], "index_raw"),
                             part("limits", 1)], "index_f")
        token = node("Cast", [index], "token", to=TensorProto.INT64)
        covered = node("Add", [node("Mul", [total, "zero"], "zeros"), "one"], "covered_2d")
    else:
        # Sorted, only the POOL most likely tokens. ranks = [0, 1, ..., pool - 1]; shape_info[0] =
        # pool; limits = [use the pool's own total (top-k set: the top k are all in the pool),
        # covered whatever the mass (the pool holds the whole top-k or the whole vocabulary)].
        ranked, order = "ranked", "order"
        nodes.append(helper.make_node("TopK", [weights, part("shape_info", 0)], [ranked, order], name="sort", axis=1,
                                      largest=1, sorted=1))
        in_k = node("Cast", [node("Less", ["ranks", "top_k"], "below_k")], "in_k", to=TensorProto.DOUBLE)
        top_k_mass = node("Mul", [ranked, in_k], "top_k_weights")
        pool_total = node("ReduceSum", [top_k_mass, "axis1"], "pool_total", keepdims=1)
        full_total = node("ReduceSum", [weights, "axis1"], "full_total", keepdims=1)
        use_pool = part("limits", 0)
        total_k = node("Add", [node("Mul", [pool_total, use_pool], "pool_part"),
                               node("Mul", [full_total, node("Sub", ["one", use_pool], "use_full")], "full_part")],
                       "total_k")
        running = node("CumSum", [top_k_mass, "axis1"], "running")
        before = node("Div", [node("Sub", [running, top_k_mass], "mass_before_raw"), total_k], "mass_before")
        in_p = node("Cast", [node("Less", [before, "top_p"], "below_p")], "in_p", to=TensorProto.DOUBLE)
        support = node("Mul", [top_k_mass, in_p], "support")
        kept = node("ReduceSum", [node("Mul", [in_k, in_p], "kept"), "axis1"], "kept_count", keepdims=1)
        # Covered: the nucleus ends inside the pool (its last entry is not kept), or the pool holds
        # everything the host would look at.
        last_kept = node("Slice", [in_p, "last", "end", "axis1"], "last_in_p")
        covered = node("Max", [node("Sub", ["one", last_kept], "ends_inside"), part("limits", 1)], "covered_2d")
        cdf = node("CumSum", [support, "axis1"], "cdf")
        target = node("Mul", [u, node("ReduceSum", [support, "axis1"], "total", keepdims=1)], "target")
        index = node("Min", [count_le(cdf, target, "passed"), node("Sub", [kept, "one"], "last_index")], "index_f")
        token = node("GatherElements", [order, node("Cast", [index], "index", to=TensorProto.INT64)], "token", axis=1)
    token_shifted = node("GatherElements", [shifted, token], "token_shifted", axis=1)
    logprob = node("Sub", [token_shifted, log_norm], "token_logprob")
    nodes.append(helper.make_node("Squeeze", [token, "axis1"], ["tokens"], name="tokens"))
    nodes.append(helper.make_node("Squeeze", [logprob, "axis1"], ["logprobs"], name="logprobs"))
    nodes.append(helper.make_node("Squeeze", [covered, "axis1"], ["covered"], name="covered"))

    scalars = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1]) for n in ("temperature", "inv_temperature")]
    scalars += [helper.make_tensor_value_info(n, TensorProto.DOUBLE, [1]) for n in ("top_k", "top_p")]
    graph = helper.make_graph(
        nodes,
        f"token_selector_{kind}",
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["rows_in", "width", "vocab"]),
         helper.make_tensor_value_info("rows", TensorProto.INT64, ["k"]),
         helper.make_tensor_value_info("uniforms", TensorProto.DOUBLE, ["k"]),
         *scalars,
         helper.make_tensor_value_info("shape_info", TensorProto.INT64, [4]),
         helper.make_tensor_value_info("limits", TensorProto.DOUBLE, [2]),
         helper.make_tensor_value_info("ranks", TensorProto.DOUBLE, ["pool"])],
        [helper.make_tensor_value_info("tokens", TensorProto.INT64, ["k"]),
         helper.make_tensor_value_info("logprobs", TensorProto.FLOAT, ["k"]),
         helper.make_tensor_value_info("covered", TensorProto.DOUBLE, ["k"])],
        initializer=[numpy_helper.from_array(v, name=k) for k, v in consts.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="router")
    model.ir_version = 9
    onnx.checker.check_model(model, full_check=True)
    return model

