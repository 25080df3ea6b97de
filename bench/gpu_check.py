"""GPU check for the engine's CUDA path: run on a machine with an NVIDIA GPU and onnxruntime-gpu.

    make install-gpu && .venv/bin/python bench/gpu_check.py --out bench/results

What it checks (the CPU machines here cannot):
- the CUDA execution provider really is in use (no silent CPU fallback: fallback is disallowed);
- the KV cache stays on the device (the engine binds presents to ``cuda`` via IOBinding);
- every node of the decoder has a CUDA kernel: a second session with ONNX Runtime's
  ``session.disable_cpu_ep_fallback`` opens, or refuses because some node would fall back to the
  CPU (the decoder uses the opset-23 ``Attention``, whose CUDA kernel is recent; some builds also
  keep small shape nodes on the CPU on purpose, so a refusal needs a look at the verbose log);
- greedy tokens equal the CPU path's on 3 prompts x 64 tokens (first divergence reported);
- greedy batch-1 and n=8 sampling tokens/s on CUDA next to CPU, in the same run.
Results go to ``gpu_check.json`` and ``gpu_check.md`` in ``--out``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from router.config import Settings  # noqa: E402
from router.engine import Engine, SamplingParams  # noqa: E402
from router.engine.session import CPU, CUDA, SessionSettings  # noqa: E402

PROMPTS = [
    "What is the capital of France?",
    "Write a short story about a robot who learns to paint.",
    "Explain step by step how to add 38 and 47.",
]


def tokens_per_s(engine: Engine, prompt: str, params: SamplingParams, n: int, repeats: int) -> float:
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        comps = engine.generate(prompt, params, n=n)
        rates.append(sum(c.completion_tokens for c in comps) / (time.perf_counter() - start))
    return statistics.median(rates)


def cuda_only_placement(model_file: Path) -> dict[str, object]:
    """Does every node get a CUDA kernel? (A session that may not fall back to the CPU opens or not.)"""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
    try:
        ort.InferenceSession(str(model_file), options, providers=[CUDA])
    except Exception as exc:  # noqa: BLE001 - the message names the nodes; it is the result
        return {"all_nodes_on_cuda": False, "error": str(exc)[:2000]}
    return {"all_nodes_on_cuda": True, "error": ""}


def first_divergence(a: list[int], b: list[int]) -> int | None:
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=None)
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    settings = Settings()
    model_dir = settings.model_dir(args.model)
    gpu = Engine.load(model_dir, SessionSettings(providers=(CUDA,), allow_cpu_fallback=False))
    cpu = Engine.load(model_dir, SessionSettings(providers=(CPU,)))
    greedy = SamplingParams(max_new_tokens=64)
    parity = []
    for prompt in PROMPTS:
        g = gpu.generate(prompt, greedy)[0].token_ids
        c = cpu.generate(prompt, greedy)[0].token_ids
        parity.append({"prompt": prompt, "equal": g == c, "first_divergence": first_divergence(g, c), "tokens": len(c)})
    sample = SamplingParams(temperature=0.7, max_new_tokens=64, seed=1)
    story = PROMPTS[1]
    speed = {
        dev: {
            "greedy_batch1_tok_s": round(tokens_per_s(eng, story, greedy, 1, args.repeats), 1),
            "n8_sampling_tok_s": round(tokens_per_s(eng, story, sample, 8, args.repeats), 1),
        }
        for dev, eng in (("cuda", gpu), ("cpu", cpu))
    }
    gpu_name = subprocess.run(
        ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"], capture_output=True, text=True
    ).stdout.strip()
    placement = cuda_only_placement(model_dir / gpu.manifest.decoder_file)
    report = {
        "placement": placement,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"gpu": gpu_name, "host": platform.node(), "python": platform.python_version()},
        "providers": {"gpu_engine": gpu.providers, "cpu_engine": cpu.providers},
        "parity": parity,
        "speed": speed,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_check.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        f"# GPU check — {report['date']}",
        "",
        f"GPU: {gpu_name}; providers in use: {gpu.providers}",
        "",
        f"Every decoder node has a CUDA kernel: {placement['all_nodes_on_cuda']} {placement['error'][:300]}",
        "",
        "| prompt | greedy equal to CPU | first divergence |",
        "|---|---|---|",
        *[f"| {p['prompt'][:40]} | {p['equal']} | {p['first_divergence']} |" for p in parity],
        "",
        "| device | greedy batch-1 tok/s | n=8 sampling tok/s |",
        "|---|---|---|",
        *[f"| {d} | {s['greedy_batch1_tok_s']} | {s['n8_sampling_tok_s']} |" for d, s in speed.items()],
    ]
    (args.out / "gpu_check.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if all(p["equal"] for p in parity) else 1


if __name__ == "__main__":
    raise SystemExit(main())
