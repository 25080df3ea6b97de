"""GPU check for the engine's CUDA path: run on a machine with an NVIDIA GPU and onnxruntime-gpu.

    make install-gpu && .venv/bin/python bench/gpu_check.py --out bench/results

What it checks (the CPU machines here cannot):
- the CUDA execution provider really is in use (no silent CPU fallback: fallback is disallowed);
- the KV cache stays on the device (the engine binds presents to ``cuda`` via IOBinding);
- node placement: which decoder nodes ONNX Runtime puts on the CPU (read from its verbose
  placement log in a child process; ORT keeps small shape nodes on the CPU on purpose, so the
  list matters more than the yes/no of a session with ``session.disable_cpu_ep_fallback``);
- greedy tokens equal the CPU path's on 3 prompts x 64 tokens, and after a fork (first divergence
  reported);
- tokens/s on CUDA next to CPU in the same run: greedy batch 1, and sampling at n = 1 ... 64;
- the device-selection threshold: tokens/s with tokens selected on the device at every batch size,
  on the host at every batch size, and as the engine does by default (on the device from
  ``DEVICE_SELECTION_MIN_ROWS`` rows), interleaved row count by row count in one process;
- where a decode step's time goes at n = 1, 8, 64: inside ONNX Runtime, in token selection on the
  host, and the rest (Python, IOBinding), and ONNX Runtime's own per-operator profile of one
  decode step on CUDA. This is what says what to optimise next on a GPU.
Results go to ``gpu_check.json`` and ``gpu_check.md`` in ``--out``.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import router.engine.engine as engine_module  # noqa: E402
from bench import machine  # noqa: E402
from router.config import Settings  # noqa: E402
from router.engine import Engine, SamplingParams  # noqa: E402
from router.engine.device_select import ARTIFACTS, model_file  # noqa: E402
from router.engine.session import CPU, CUDA, SessionSettings  # noqa: E402

PROMPTS = [
    "What is the capital of France?",
    "Write a short story about a robot who learns to paint.",
    "Explain step by step how to add 38 and 47.",
]
STORY = PROMPTS[1]
SCALING_N = (1, 8, 16, 32, 64)
BREAKDOWN_N = (1, 8, 64)
SWEEP_N = (8, 16, 24, 32, 48, 64)


def tokens_per_s(engine: Engine, prompt: str, params: SamplingParams, n: int, repeats: int) -> float:
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        comps = engine.generate(prompt, params, n=n)
        rates.append(sum(c.completion_tokens for c in comps) / (time.perf_counter() - start))
    return statistics.median(rates)


def selection_sweep(engines: dict[str, Engine], params: SamplingParams, ns: tuple[int, ...],
                    repeats: int) -> dict[str, Any]:
    """Tokens/s per row count for each engine, and on which side the default engine selected.

    The engines take turns on every row count in every repeat, so drift over the run lands on all
    of them alike; medians of ``repeats``.
    """
    rates: dict[str, dict[int, list[float]]] = {name: {n: [] for n in ns} for name in engines}
    on_device: dict[int, list[float]] = {n: [] for n in ns}
    for _ in range(repeats):
        for n in ns:
            for name, eng in engines.items():
                steps, selected = eng.stats.decode_steps, eng.stats.device_selections
                start = time.perf_counter()
                comps = eng.generate(STORY, params, n=n)
                rates[name][n].append(sum(c.completion_tokens for c in comps) / (time.perf_counter() - start))
                if name == "default":
                    on_device[n].append((eng.stats.device_selections - selected)
                                        / max(1, eng.stats.decode_steps - steps))
    tok_s = {name: {str(n): round(statistics.median(v), 1) for n, v in by_n.items()} for name, by_n in rates.items()}
    device, host = tok_s["device"], tok_s["host"]
    # The smallest row count from which the device side is faster at every larger count measured.
    faster = [int(n) for n in device if all(device[m] > host[m] for m in device if int(m) >= int(n))]
    return {"params": f"T={params.temperature}, top_p={params.top_p}", "tok_s": tok_s,
            "default_device_share": {str(n): round(statistics.median(v), 3) for n, v in on_device.items()},
            "device_faster_from": min(faster) if faster else None,
            "default_min_rows": engine_module.DEVICE_SELECTION_MIN_ROWS}


_PLACED = re.compile(r"Node\(s\) placed on \[(\w+)\]\. Number of nodes: (\d+)")
_NODE = re.compile(r"VerifyEachNodeIsAssignedToAnEp\]\s+(\w+) \((\S+)\)")


def node_placement(model_file: Path) -> dict[str, Any]:
    """Which nodes ONNX Runtime assigns to which provider, from its verbose log (a child process:
    the log goes to the C++ stderr, which Python cannot capture in-process)."""
    code = (
        "import sys, onnxruntime as o\n"
        "from router.engine.session import _load_cuda_libraries\n"
        "_load_cuda_libraries()\n"
        "s = o.SessionOptions(); s.log_severity_level = 0\n"
        "o.InferenceSession(sys.argv[1], s, providers=['CUDAExecutionProvider', 'CPUExecutionProvider'])\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(model_file)], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1], check=False)
    counts, nodes = parse_placement(proc.stderr)
    error = "" if counts else (
        "no placement lines in ONNX Runtime's verbose log (it prints them when more than one provider "
        f"takes nodes); exit code {proc.returncode}, log tail: {proc.stderr[-500:]}")
    return {"counts": counts, "cpu_nodes": nodes.get(CPU, []), "exit_code": proc.returncode, "error": error}


def parse_placement(log: str) -> tuple[dict[str, int], dict[str, list[str]]]:
    """Node count per provider, and the nodes (``OpType (name)``), from a verbose session log."""
    counts: dict[str, int] = {}
    nodes: dict[str, list[str]] = collections.defaultdict(list)
    current = None
    for line in log.splitlines():
        if m := _PLACED.search(line):
            current = m.group(1)
            counts[current] = int(m.group(2))
        elif current and (m := _NODE.search(line)):
            nodes[current].append(f"{m.group(1)} ({m.group(2)})")
    return counts, dict(nodes)


def first_divergence(a: list[int], b: list[int]) -> int | None:
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def fork_tokens(engine: Engine, prompt: str) -> list[list[int]]:
    """Prefill once, fork into two rows given different first steps, decode both greedily: the
    cache is copied through the host on CUDA (``SequenceState.select``), which tree search uses."""
    state = engine.prefill(engine.tokenizer.encode_prompt(prompt))
    forked = engine.extend(state.fork(2), [engine.tokenizer.encode("First,"), engine.tokenizer.encode("We")])
    return [c.token_ids for c in engine.decode(forked, SamplingParams(max_new_tokens=32))]


def step_breakdown(engine: Engine, n: int, tokens: int = 64) -> dict[str, float]:
    """Milliseconds per decode step spent inside ONNX Runtime (``Engine._run``: binding, run,
    logits to the host), in token selection, and elsewhere, for one ``n``-sample generation."""
    spent = {"ort": 0.0, "select": 0.0}
    run, select = engine._run, engine_module.select_tokens
    selector = engine._selector

    def timed(fn: Any, key: str) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[key] += time.perf_counter() - t
        return wrapper

    params = SamplingParams(temperature=0.7, max_new_tokens=tokens, seed=3)
    engine.generate(STORY, params, n=n)  # warm-up at this batch shape
    engine._run, engine_module.select_tokens = timed(run, "ort"), timed(select, "select")
    if selector is not None:  # selection on the device: the selector's run, transfers included
        selector.select = timed(selector.select, "select")
    steps_before = engine.stats.forward_calls
    try:
        start = time.perf_counter()
        engine.generate(STORY, params, n=n)
        total = time.perf_counter() - start
    finally:
        del engine._run
        engine_module.select_tokens = select
        if selector is not None:
            del selector.select
    steps = max(1, engine.stats.forward_calls - steps_before)
    ms = {k: round(1000 * v / steps, 3) for k, v in spent.items()}
    ms["total"] = round(1000 * total / steps, 3)
    ms["rest"] = round(ms["total"] - ms["ort"] - ms["select"], 3)
    ms["forwards"] = steps
    return ms


def op_profile(engine: Engine, rows: int, past: int, runs: int = 20) -> dict[str, Any]:
    """ONNX Runtime's per-operator profile of one decode step (``rows`` x 1 new token over ``past``
    cached tokens) on the engine's provider, the cache bound on the device as the engine binds it."""
    import onnxruntime as ort

    arch = engine.manifest.architecture
    options = ort.SessionOptions()
    options.enable_profiling = True
    options.log_severity_level = 3
    with tempfile.TemporaryDirectory() as tmp:
        options.profile_file_prefix = str(Path(tmp) / "step")
        session = ort.InferenceSession(str(engine.model_dir / engine.manifest.decoder_file), options,
                                       providers=engine._session.get_providers())
        device = "cuda" if session.get_providers()[0] == CUDA else "cpu"
        rng = np.random.default_rng(0)
        kv = [ort.OrtValue.ortvalue_from_numpy(
            rng.standard_normal((rows, arch.num_kv_heads, past, arch.head_dim)).astype(np.float32), device, 0)
            for _ in range(2 * arch.num_layers)]

        def step() -> None:
            binding = session.io_binding()
            binding.bind_cpu_input("input_ids", np.ones((rows, 1), np.int64))
            binding.bind_cpu_input("attention_mask", np.ones((rows, past + 1), np.int64))
            binding.bind_cpu_input("position_ids", np.full((rows, 1), past, np.int64))
            for i in range(arch.num_layers):
                binding.bind_ortvalue_input(f"past_key_values.{i}.key", kv[2 * i])
                binding.bind_ortvalue_input(f"past_key_values.{i}.value", kv[2 * i + 1])
            binding.bind_output("logits", "cpu")
            for name in (o.name for o in session.get_outputs()[1:]):
                binding.bind_output(name, device)
            session.run_with_iobinding(binding)

        for _ in range(3):
            step()
        start = time.perf_counter()
        for _ in range(runs):
            step()
        wall_ms = 1000 * (time.perf_counter() - start) / runs
        events = json.loads(Path(session.end_profiling()).read_text())
    by_op: collections.Counter[str] = collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            by_op[e["args"]["op_name"]] += e["dur"]
    total_us = sum(by_op.values())
    calls = runs + 3
    return {
        "rows": rows, "past": past, "wall_ms": round(wall_ms, 3),
        "kernel_ms": round(total_us / calls / 1000, 3),
        "top_ops": [{"op": op, "ms": round(us / calls / 1000, 3), "share": round(us / total_us, 3)}
                    for op, us in by_op.most_common(8)],
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=None)
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    settings = Settings()
    model_dir = settings.model_dir(args.model)
    on_gpu = SessionSettings(providers=(CUDA,), allow_cpu_fallback=False)
    # Sampled tokens selected on the device at every batch size (the engine's default starts at
    # DEVICE_SELECTION_MIN_ROWS rows: this run is what that threshold comes from).
    gpu = Engine.load(model_dir, on_gpu, device_selection=True, device_selection_min_rows=1)
    gpu_host = Engine.load(model_dir, on_gpu, device_selection=False)  # the same, selection on the host
    default = Engine.load(model_dir, on_gpu)  # as the server runs it: device selection from the threshold
    cpu = Engine.load(model_dir, SessionSettings(providers=(CPU,)))
    greedy = SamplingParams(max_new_tokens=64)
    parity = []
    for prompt in PROMPTS:
        g = gpu.generate(prompt, greedy)[0].token_ids
        c = cpu.generate(prompt, greedy)[0].token_ids
        parity.append({"prompt": prompt, "equal": g == c, "first_divergence": first_divergence(g, c), "tokens": len(c)})
    fork_g, fork_c = fork_tokens(gpu, PROMPTS[2]), fork_tokens(cpu, PROMPTS[2])
    parity.append({"prompt": "fork(2) of: " + PROMPTS[2], "equal": fork_g == fork_c,
                   "first_divergence": next((first_divergence(g, c) for g, c in zip(fork_g, fork_c, strict=True)
                                             if g != c), None),
                   "tokens": sum(len(c) for c in fork_c)})
    sample = SamplingParams(temperature=0.7, max_new_tokens=64, seed=1)
    nucleus = SamplingParams(temperature=0.3, top_p=0.95, max_new_tokens=64, seed=1)  # the ladder's levels
    sampling_parity = []
    for params in (sample, nucleus):
        for n in (8, 64):
            a = [c.token_ids for c in gpu.generate(STORY, params, n=n)]
            b = [c.token_ids for c in gpu_host.generate(STORY, params, n=n)]
            sampling_parity.append({"params": f"T={params.temperature}, top_p={params.top_p}", "n": n,
                                    "equal_rows": sum(x == y for x, y in zip(a, b, strict=True)),
                                    "first_divergence": next((first_divergence(x, y) for x, y in zip(a, b, strict=True)
                                                              if x != y), None)})
    speed: dict[str, dict[str, float]] = {}
    engines = (("cuda", gpu, SCALING_N), ("cuda, host selection", gpu_host, SCALING_N), ("cpu", cpu, SCALING_N[:3]))
    for dev, eng, ns in engines:
        speed[dev] = {"greedy_batch1_tok_s": round(tokens_per_s(eng, STORY, greedy, 1, args.repeats), 1)}
        for n in ns:
            speed[dev][f"n{n}_sampling_tok_s"] = round(tokens_per_s(eng, STORY, sample, n, args.repeats), 1)
        if eng is not cpu:
            speed[dev]["n64_top_p_0.95_tok_s"] = round(tokens_per_s(eng, STORY, nucleus, 64, args.repeats), 1)
    sweep = [selection_sweep({"device": gpu, "host": gpu_host, "default": default}, params, SWEEP_N, args.repeats)
             for params in (nucleus, sample)]
    breakdown = {f"n{n}": step_breakdown(gpu, n) for n in BREAKDOWN_N}
    breakdown.update({f"n{n}, host selection": step_breakdown(gpu_host, n) for n in BREAKDOWN_N})
    profiles = [op_profile(gpu, rows, 100) for rows in (1, 64)]
    gpu_name = subprocess.run(
        ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"], capture_output=True, text=True
    ).stdout.strip()
    placement = node_placement(model_dir / gpu.manifest.decoder_file)
    selector_placement = {kind: node_placement(ARTIFACTS / model_file(kind)) for kind in ("full", "truncated")}
    report = {
        "placement": placement,
        "selector_placement": selector_placement,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"gpu": gpu_name, "host": platform.node(), "python": platform.python_version(),
                    "cpu": machine.cpu_model(), "logical_cores": os.cpu_count(),
                    "onnxruntime": machine.version("onnxruntime-gpu"), "git_commit": machine.git_commit()},
        "providers": {"gpu_engine": gpu.providers, "cpu_engine": cpu.providers,
                      "token_selector": gpu._selector.providers if gpu._selector else None},
        "parity": parity,
        "sampling_parity": sampling_parity,
        "speed": speed,
        "selection_sweep": sweep,
        "step_breakdown_ms": breakdown,
        "op_profiles": profiles,
        "peak_rss_mb": round(machine.peak_rss_mb(), 1),
    }
    machine.write_report(args.out, "gpu_check", report, render(report))
    return 0 if all(p["equal"] for p in parity) else 1


def render(report: dict[str, Any]) -> str:
    m, placement, speed = report["machine"], report["placement"], report["speed"]
    cpu_nodes = placement["cpu_nodes"]
    lines = [
        f"# GPU check — {report['date']}",
        "",
        f"GPU: {m['gpu']} · host CPU: {m['cpu']}, {m['logical_cores']} logical cores · Python {m['python']} · "
        f"onnxruntime-gpu {m['onnxruntime']} · commit {(m['git_commit'] or 'unknown')[:12]} · "
        f"peak RSS {report['peak_rss_mb']} MB (both engines in one process)",
        "",
        f"Providers in use: CUDA engine {report['providers']['gpu_engine']}, CPU engine "
        f"{report['providers']['cpu_engine']}, token selector {report['providers'].get('token_selector')}.",
        "",
        f"Node placement: {placement['counts'] or placement['error'][:300]}. "
        + (f"On the CPU: {', '.join(cpu_nodes)}." if cpu_nodes else "No node on the CPU."),
        "",
        *[f"Token selector '{kind}' placement: {p['counts'] or p['error'][:200]}"
          + (f"; on the CPU: {', '.join(p['cpu_nodes'])}." if p["cpu_nodes"] else ".")
          for kind, p in report.get("selector_placement", {}).items()],
        "",
        "## Greedy parity with the CPU path",
        "",
        "| prompt | greedy equal to CPU | first divergence | tokens |",
        "|---|---|---|---|",
        *[f"| {p['prompt'][:48]} | {p['equal']} | {p['first_divergence']} | {p['tokens']} |"
          for p in report["parity"]],
        "",
        "## Sampling: tokens selected on the device vs on the host (same CUDA logits, same seeds)",
        "",
        "| sampling | n | rows with equal tokens | first divergence |",
        "|---|---|---|---|",
        *[f"| {p['params']} | {p['n']} | {p['equal_rows']}/{p['n']} | {p['first_divergence']} |"
          for p in report.get("sampling_parity", [])],
        "",
        "## Tokens/s, CUDA next to CPU (same run; 64 new tokens, sampling at T=0.7 unless named)",
        "",
        "`cuda` selects sampled tokens on the device at every batch size; `cuda, host selection` copies the "
        "logits to the host and selects there.",
        "",
        "| device | " + " | ".join(k.removesuffix("_tok_s").replace("_", " ") for k in speed["cuda"]) + " |",
        "|---|" + "---|" * len(speed["cuda"]),
        *[f"| {dev} | " + " | ".join(str(s.get(k, "")) for k in speed["cuda"]) + " |" for dev, s in speed.items()],
        "",
        "## Device-selection threshold (64 new tokens; engines interleaved per row count)",
        "",
        *[line for sw in report.get("selection_sweep", []) for line in render_sweep(sw)],
        "## Where a CUDA decode step goes (ms per forward pass, one generation of 64 tokens)",
        "",
        "| n | total | decoder pass (ONNX Runtime) | token selection | rest (Python, binding) |",
        "|---|---|---|---|---|",
        *[f"| {k.removeprefix('n')} | {v['total']} | {v['ort']} | {v['select']} | {v['rest']} |"
          for k, v in report["step_breakdown_ms"].items()],
        "",
        "## ONNX Runtime's per-operator profile of one CUDA decode step (100 cached tokens)",
        "",
    ]
    for prof in report["op_profiles"]:
        tops = ", ".join(f"{t['op']} {t['ms']} ms ({t['share']:.0%})" for t in prof["top_ops"])
        lines.append(f"- rows {prof['rows']}: wall {prof['wall_ms']} ms per step, "
                     f"kernels {prof['kernel_ms']} ms: {tops}")
    return "\n".join(lines) + "\n"


def render_sweep(sw: dict[str, Any]) -> list[str]:
    ns = list(sw["tok_s"]["device"])
    lines = [f"Sampling {sw['params']}; tokens/s (medians):", "",
             "| selection | " + " | ".join(f"n={n}" for n in ns) + " |", "|---|" + "---|" * len(ns)]
    lines += [f"| {name} | " + " | ".join(str(by_n[n]) for n in ns) + " |" for name, by_n in sw["tok_s"].items()]
    lines.append("| default: share of steps selected on the device | "
                 + " | ".join(str(sw["default_device_share"][n]) for n in ns) + " |")
    faster = (f"from n={sw['device_faster_from']} on (at every larger n measured)" if sw["device_faster_from"]
              else "at none of the row counts measured")
    lines += ["", f"Device selection is faster than host selection {faster}; the engine's default threshold is "
                  f"{sw['default_min_rows']} rows.", ""]
    return lines


if __name__ == "__main__":
    raise SystemExit(main())
