"""Where a batched CPU decode step's attention time goes, and what an in-place KV cache would buy.

The decoder (router/modelbuild/graph.py) uses ONNX's ``Attention`` (opset 23): each step it takes
the past cache and returns a new ``present`` tensor one slot longer, so every step copies the whole
cache. At n=8 that copy is most of the attention time, which is part of why the n=8 ratio of
``bench/engine.py`` sits near, not above, 5x on this CPU. This script measures the alternatives on
the model's real attention shapes, the attention operators alone (30 layers, nothing else), all in
one process and run, against the current operator as the peer:

- ``onnx Attention`` — what the decoder runs now (past -> new present);
- ``GQA, new present`` — ``com.microsoft.GroupQueryAttention``, same interface (past -> present);
- ``GQA, in-place cache`` — the same operator with past and present bound to one preallocated
  buffer, so a step writes one slot and copies nothing (what the engine would need: a fixed-capacity
  cache per state, grown by reallocation; ONNX Runtime's CUDA kernel for it is fp16/bf16 only);
- ``MatMul + Softmax`` — attention spelled out in plain operators (query heads grouped per KV
  head, no repeat of the cache), with the cache still concatenated each step.

Every variant's output is checked against the peer's (max abs difference). The variants of a case
run in alternating blocks (median block), so a slow spell of the machine lands on all of them.

    python bench/attention.py [--model smollm2-135m-instruct] [--runs 300]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.machine import machine_info, peak_rss_mb, write_report  # noqa: E402

RESULTS = ROOT / "bench" / "results"
CASES = ((1, 80), (8, 80), (1, 300), (8, 300))  # (rows, cached tokens); one new token per row
PEER = "onnx Attention"
F32 = TensorProto.FLOAT


class Shape:
    def __init__(self, arch: dict) -> None:
        self.layers, self.heads = arch["num_layers"], arch["num_attention_heads"]
        self.kv_heads, self.head_dim = arch["num_kv_heads"], arch["head_dim"]
        self.group = self.heads // self.kv_heads


def _session(nodes: list, inputs: list, outputs: list, threads: int, inits: list | None = None) -> ort.InferenceSession:
    graph = helper.make_graph(nodes, "attention", inputs, outputs, initializer=inits or [])
    opsets = [helper.make_opsetid("", 23), helper.make_opsetid("com.microsoft", 1)]
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 10
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads, opts.log_severity_level = threads, 1, 3
    # Four sessions take turns here: a finished session's threads spinning for work would steal
    # the cores from the next one (the engine runs one session and keeps the default).
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def _vi(name: str, shape: list | None, dtype: int = F32) -> object:
    return helper.make_tensor_value_info(name, dtype, shape)


def variants(s: Shape, rows: int, past: int, threads: int) -> dict[str, Callable[[], list[np.ndarray]]]:
    """name -> one step of all layers, returning each layer's attention output."""
    rng = np.random.default_rng(0)
    h, kvh, d, L = s.heads, s.kv_heads, s.head_dim, s.layers
    q = rng.standard_normal((rows, 1, h * d)).astype(np.float32)
    k = rng.standard_normal((rows, 1, kvh * d)).astype(np.float32)
    v = rng.standard_normal((rows, 1, kvh * d)).astype(np.float32)
    cache = [rng.standard_normal((rows, kvh, past, d)).astype(np.float32) for _ in range(2 * L)]
    # Random holes in the past, as after forks of different lengths; the new slot is open.
    bias = np.where(rng.random((rows, 1, 1, past + 1)) < 0.2, np.finfo(np.float32).min, 0).astype(np.float32)
    bias[..., -1] = 0
    base_in = [_vi("q", [rows, 1, h * d]), _vi("k", [rows, 1, kvh * d]), _vi("v", [rows, 1, kvh * d]),
               _vi("bias", [rows, 1, 1, past + 1])]
    past_in = [_vi(f"past{j}", [rows, kvh, past, d]) for j in range(2 * L)]
    feeds = {"q": q, "k": k, "v": v, "bias": bias, **{f"past{j}": cache[j] for j in range(2 * L)}}
    outs = [_vi(f"o{i}", None) for i in range(L)]
    presents = [_vi(f"present{j}", None) for j in range(2 * L)]
    scale = d**-0.5
    out: dict[str, Callable[[], list[np.ndarray]]] = {}

    nodes = [helper.make_node("Attention", ["q", "k", "v", "bias", f"past{2 * i}", f"past{2 * i + 1}"],
                              [f"o{i}", f"present{2 * i}", f"present{2 * i + 1}"],
                              q_num_heads=h, kv_num_heads=kvh, scale=scale) for i in range(L)]
    onnx_attn = _session(nodes, base_in + past_in, outs + presents, threads)
    out[PEER] = lambda: onnx_attn.run([f"o{i}" for i in range(L)], feeds)

    seq = {"seqlens_k": np.full((rows,), past, np.int32), "total": np.array(past + 1, np.int32)}
    seq_in = [_vi("seqlens_k", [rows], TensorProto.INT32), _vi("total", [], TensorProto.INT32)]

    def gqa(i: int) -> object:
        inputs = ["q", "k", "v", f"past{2 * i}", f"past{2 * i + 1}", "seqlens_k", "total", "", "", "", "bias"]
        return helper.make_node("GroupQueryAttention", inputs, [f"o{i}", f"present{2 * i}", f"present{2 * i + 1}"],
                                domain="com.microsoft", num_heads=h, kv_num_heads=kvh, scale=scale)

    gqa_new = _session([gqa(i) for i in range(L)], base_in + seq_in + past_in, outs + presents, threads)
    out["GQA, new present"] = lambda: gqa_new.run([f"o{i}" for i in range(L)], {**feeds, **seq})

    capacity = past + 64
    buf_in = [_vi(f"past{j}", [rows, kvh, capacity, d]) for j in range(2 * L)]
    gqa_inplace = _session([gqa(i) for i in range(L)], base_in + seq_in + buf_in, outs + presents, threads)
    buffers = []
    for j in range(2 * L):
        arr = np.zeros((rows, kvh, capacity, d), np.float32)
        arr[:, :, :past] = cache[j]
        buffers.append((arr, ort.OrtValue.ortvalue_from_numpy(arr)))

    def run_inplace() -> list[np.ndarray]:
        binding = gqa_inplace.io_binding()
        for name in ("q", "k", "v", "bias"):
            binding.bind_cpu_input(name, feeds[name])
        for name, value in seq.items():
            binding.bind_cpu_input(name, value)
        for j, (_, value) in enumerate(buffers):
            binding.bind_ortvalue_input(f"past{j}", value)
            binding.bind_ortvalue_output(f"present{j}", value)  # the same buffer: written in place
        for i in range(L):
            binding.bind_output(f"o{i}", "cpu")
        gqa_inplace.run_with_iobinding(binding)
        return [o.numpy() for o in binding.get_outputs()[2 * L:]]

    out["GQA, in-place cache"] = run_inplace

    ints = lambda name, values: helper.make_tensor(name, TensorProto.INT64, [len(values)], values)  # noqa: E731
    g = s.group
    inits = [ints("shape_q5", [0, 0, kvh, g, d]), ints("shape_q4", [rows, kvh, g, d]),
             ints("shape_kv4", [0, 0, kvh, d]), ints("shape_o3", [0, 0, h * d]),
             ints("shape_s5", [rows, kvh, g, 1, -1]), ints("shape_s4", [rows, kvh, g, -1]), ints("shape_ax2", [2])]
    nodes = [helper.make_node("Reshape", ["q", "shape_q5"], ["qh"]),
             helper.make_node("Transpose", ["qh"], ["qt"], perm=[0, 2, 3, 1, 4]),
             helper.make_node("Reshape", ["qt", "shape_q4"], ["qg"]),  # [rows, kv heads, group, d]
             helper.make_node("Reshape", ["k", "shape_kv4"], ["kh"]),
             helper.make_node("Transpose", ["kh"], ["kt"], perm=[0, 2, 1, 3]),
             helper.make_node("Reshape", ["v", "shape_kv4"], ["vh"]),
             helper.make_node("Transpose", ["vh"], ["vt"], perm=[0, 2, 1, 3]),
             helper.make_node("Unsqueeze", ["bias", "shape_ax2"], ["bias5"])]
    for i in range(L):
        kc, vc = f"present{2 * i}", f"present{2 * i + 1}"
        nodes += [helper.make_node("Concat", [f"past{2 * i}", "kt"], [kc], axis=2),
                  helper.make_node("Concat", [f"past{2 * i + 1}", "vt"], [vc], axis=2),
                  helper.make_node("FusedMatMul", ["qg", kc], [f"s{i}"], domain="com.microsoft", transB=1, alpha=scale),
                  helper.make_node("Reshape", [f"s{i}", "shape_s5"], [f"s5_{i}"]),
                  helper.make_node("Add", [f"s5_{i}", "bias5"], [f"b{i}"]),
                  helper.make_node("Softmax", [f"b{i}"], [f"p5_{i}"], axis=-1),
                  helper.make_node("Reshape", [f"p5_{i}", "shape_s4"], [f"p{i}"]),
                  helper.make_node("MatMul", [f"p{i}", vc], [f"a{i}"]),  # [rows, kv heads, group, d]
                  helper.make_node("Unsqueeze", [f"a{i}", "shape_ax2"], [f"a5_{i}"]),
                  helper.make_node("Transpose", [f"a5_{i}"], [f"at{i}"], perm=[0, 2, 1, 3, 4]),
                  helper.make_node("Reshape", [f"at{i}", "shape_o3"], [f"o{i}"])]
    plain = _session(nodes, base_in + past_in, outs + presents, threads, inits)
    out["MatMul + Softmax"] = lambda: plain.run([f"o{i}" for i in range(L)], feeds)
    return out


def interleaved_ms(fns: dict[str, Callable[[], object]], runs: int, blocks: int = 15) -> dict[str, float]:
    """Median ms per call of each function, measured in alternating blocks so that a slow spell of
    the machine lands on every variant alike."""
    for fn in fns.values():
        for _ in range(3):
            fn()
    per_block = max(1, runs // blocks)
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(blocks):
        for name, fn in fns.items():
            start = time.perf_counter()
            for _ in range(per_block):
                fn()
            times[name].append((time.perf_counter() - start) / per_block * 1000)
    return {name: statistics.median(t) for name, t in times.items()}


def measure(s: Shape, runs: int, threads: int) -> list[dict]:
    rows_out = []
    for rows, past in CASES:
        fns = variants(s, rows, past, threads)
        reference = fns[PEER]()
        diffs = {name: max(float(np.abs(a - b).max()) for a, b in zip(reference, fn(), strict=True))
                 for name, fn in fns.items()}
        ms = interleaved_ms(fns, runs)
        rows_out += [{"rows": rows, "past": past, "variant": name, "ms": round(ms[name], 3),
                      "vs_peer": round(ms[PEER] / ms[name], 2), "max_abs_diff": diffs[name]} for name in fns]
    return rows_out


def render(report: dict) -> str:
    m = report["machine"]
    lines = [
        "# Attention operators on one decode step (30 layers, attention alone)", "",
        f"{report['date']} · {m['cpu']} · {m['logical_cores']} cores · Python {m['python']} · "
        f"onnxruntime {m['versions']['onnxruntime']} · commit {(m['git_commit'] or '?')[:12]} · "
        f"{report['threads']} threads · peak RSS {report['peak_rss_mb']} MB", "",
        f"Shapes of {report['model']}: {report['shape']}. One new token per row; 20% of past slots masked. "
        f"{report['runs']} steps per variant in 15 blocks, the variants alternating block by block; median "
        "block. Speed-up: the peer's time over the variant's.", "",
        "| rows | cached tokens | variant | ms per step | speed-up vs onnx Attention | max abs diff |",
        "|---|---|---|---|---|---|",
    ]
    for r in report["results"]:
        lines.append(f"| {r['rows']} | {r['past']} | {r['variant']} | {r['ms']} | {r['vs_peer']}x "
                     f"| {r['max_abs_diff']:.1e} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-135m-instruct", help="built model whose shapes to use")
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out-dir", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    manifest = ROOT / "models" / args.model / "manifest.json"
    if not manifest.is_file():
        print(f"{manifest} is missing: build it with `router models build {args.model}`", file=sys.stderr)
        return 2
    arch = json.loads(manifest.read_text())["architecture"]
    shape = Shape(arch)
    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"), "model": args.model, "runs": args.runs,
        "threads": args.threads, "machine": machine_info(("onnxruntime", "numpy")),
        "shape": {k: arch[k] for k in ("num_layers", "num_attention_heads", "num_kv_heads", "head_dim")},
        "results": measure(shape, args.runs, args.threads),
    }
    report["peak_rss_mb"] = round(peak_rss_mb(), 1)
    write_report(args.out_dir, "attention", report, render(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
