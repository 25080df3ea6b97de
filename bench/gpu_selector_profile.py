"""Where the device token selector's fixed cost goes on a GPU (run where onnxruntime-gpu is installed).

On the H200 (``bench/results/gpu_check.md``) a selection on the device took about 3.5 ms per step
at 8 rows and 4.1 ms at 64: nearly all of it a fixed cost, so the host stays faster below 16 rows.
The graphs have 51-56 nodes, so launches alone (a few microseconds each) do not explain 3.5 ms.
This script says what does, with no model to build (the logits are random, on the device):

- wall time of :meth:`DeviceTokenSelector.select` per call, by graph and row count;
- ONNX Runtime's per-node profile of the same calls: time by operator, and the copies it inserts
  between host and device (``Memcpy*`` nodes) with what they cost;
- two variants of the binding, timed beside it: the per-call inputs uploaded to the device first,
  and the outputs left on the device (read back afterwards).

    python bench/gpu_selector_profile.py --out bench/results
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import machine  # noqa: E402
from router.engine.device_select import ARTIFACTS, DeviceTokenSelector, model_file  # noqa: E402
from router.engine.types import SamplingParams  # noqa: E402
from router.modelbuild.selector import OUTPUTS  # noqa: E402

VOCAB = 49152  # SmolLM2's
ROWS = (1, 8, 16, 64)
SETTINGS = {"full": SamplingParams(temperature=0.7, max_new_tokens=1),
            "truncated": SamplingParams(temperature=0.3, top_p=0.95, max_new_tokens=1)}


def median_ms(fn: Any, calls: int) -> float:
    for _ in range(5):
        fn()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return round(1000 * statistics.median(times), 3)


def variant(session: ort.InferenceSession, logits: ort.OrtValue, small: dict[str, np.ndarray],
            inputs_on_device: bool, outputs_on_device: bool) -> Any:
    uploaded = {k: ort.OrtValue.ortvalue_from_numpy(v, "cuda", 0) for k, v in small.items()}

    def call() -> None:
        binding = session.io_binding()
        binding.bind_ortvalue_input("logits", logits)
        for name, value in small.items():
            if inputs_on_device:
                binding.bind_ortvalue_input(name, uploaded[name])
            else:
                binding.bind_cpu_input(name, value)
        for name in OUTPUTS:
            binding.bind_output(name, "cuda" if outputs_on_device else "cpu")
        session.run_with_iobinding(binding)
        [v.numpy() for v in binding.get_outputs()]

    return call


def node_profile(kind: str, logits: ort.OrtValue, small: dict[str, np.ndarray], calls: int) -> dict[str, Any]:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.enable_profiling = True
    with tempfile.TemporaryDirectory() as tmp:
        options.profile_file_prefix = str(Path(tmp) / kind)
        session = ort.InferenceSession(str(ARTIFACTS / model_file(kind)), options,
                                       providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
        call = variant(session, logits, small, inputs_on_device=False, outputs_on_device=False)
        for _ in range(calls):
            call()
        events = json.loads(Path(session.end_profiling()).read_text())
    by_op: collections.Counter[str] = collections.Counter()
    nodes: collections.Counter[str] = collections.Counter()
    providers: collections.Counter[str] = collections.Counter()
    runs = [e["dur"] for e in events if e.get("cat") == "Session" and e["name"] == "model_run"]
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            by_op[e["args"]["op_name"]] += e["dur"]
            nodes[e["args"]["op_name"]] += 1
            providers[e["args"].get("provider", "?")] += 1
    total = sum(by_op.values())
    return {
        "model_run_us_median": statistics.median(runs) if runs else None,
        "kernel_us_per_call": round(total / calls, 1),
        "nodes_per_call": round(sum(nodes.values()) / calls, 1),
        "nodes_by_provider_per_call": {p: round(c / calls, 1) for p, c in providers.items()},
        "by_op_us_per_call": {op: round(us / calls, 1) for op, us in by_op.most_common()},
        "memcpy_nodes_per_call": round(sum(c for op, c in nodes.items() if op.startswith("Memcpy")) / calls, 1),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("bench/results"))
    p.add_argument("--calls", type=int, default=100)
    args = p.parse_args()
    selector = DeviceTokenSelector(["CUDAExecutionProvider", "CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    cases = []
    for kind in ("full", "truncated"):
        for rows in ROWS:
            host = (rng.standard_normal((rows, 1, VOCAB)) * 3).astype(np.float32)
            logits = ort.OrtValue.ortvalue_from_numpy(host, "cuda", 0)
            params = SETTINGS[kind]
            step = selector.inputs(np.arange(rows), params, np.random.default_rng(rows).random(rows), VOCAB)
            assert step is not None and step[0] == kind, (kind, step and step[0])
            small = step[1]
            session = selector.session(kind)
            case = {
                "kind": kind, "rows": rows,
                "select_ms": median_ms(lambda logits=logits, small=small, params=params: selector.select(
                    logits, small["rows"], params, small["uniforms"], VOCAB), args.calls),
                "inputs_on_device_ms": median_ms(variant(session, logits, small, True, False), args.calls),
                "outputs_on_device_ms": median_ms(variant(session, logits, small, False, True), args.calls),
                "both_on_device_ms": median_ms(variant(session, logits, small, True, True), args.calls),
                "profile": node_profile(kind, logits, small, min(args.calls, 50)),
            }
            cases.append(case)
            print(json.dumps(case), flush=True)
    report = {"date": datetime.now(UTC).isoformat(timespec="seconds"),
              "machine": {"gpu": _gpu_name(), "cpu": machine.cpu_model(), "onnxruntime": ort.__version__,
                          "git_commit": machine.git_commit()},
              "providers": selector.providers, "cases": cases, "peak_rss_mb": round(machine.peak_rss_mb(), 1)}
    machine.write_report(args.out, "gpu_selector_profile", report, render(report))
    return 0


def _gpu_name() -> str:
    import subprocess

    try:
        return subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                              capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return "unknown"


def render(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [
        "# Device token selector: where its fixed cost goes",
        "",
        f"{report['date']} · GPU {m['gpu']} · host CPU {m['cpu']} · onnxruntime {m['onnxruntime']} · "
        f"commit {(m['git_commit'] or 'unknown')[:12]} · providers {report['providers']} · "
        f"peak RSS {report['peak_rss_mb']} MB",
        "",
        "Random logits on the device, SmolLM2's vocabulary; `full` at T=0.7, `truncated` at T=0.3 with top-p 0.95. "
        "Milliseconds per call, medians.",
        "",
        "| graph | rows | select() | inputs uploaded first | outputs left on device | both | ORT model_run µs "
        "| kernels µs | nodes | Memcpy nodes |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in report["cases"]:
        prof = c["profile"]
        lines.append(f"| {c['kind']} | {c['rows']} | {c['select_ms']} | {c['inputs_on_device_ms']} | "
                     f"{c['outputs_on_device_ms']} | {c['both_on_device_ms']} | {prof['model_run_us_median']} | "
                     f"{prof['kernel_us_per_call']} | {prof['nodes_per_call']} | {prof['memcpy_nodes_per_call']} |")
    lines += ["", "## Time by operator (µs per call, ONNX Runtime's profile)", ""]
    for c in report["cases"]:
        ops = ", ".join(f"{op} {us}" for op, us in list(c["profile"]["by_op_us_per_call"].items())[:10])
        lines.append(f"- {c['kind']}, {c['rows']} rows ({c['profile']['nodes_by_provider_per_call']}): {ops}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
