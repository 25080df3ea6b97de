"""The two KV-cache layouts of the same fp32 weights, paired in one process: is in-place faster?

The default build's two graphs: concat (ONNX ``Attention``: each step returns a ``present`` cache
one slot longer than ``past``, so a step copies every row's cache; what it serves on GPUs) against
in place (``GroupQueryAttention`` writing into a preallocated buffer bound as past and present;
what ``engine.kv_cache: auto`` runs on the CPU provider). Earlier
comparisons measured them in separate sections of ``bench/engine.py``, minutes apart, and this
machine's batch-1 speed drifts by more than the difference over that time (``hugepages.md``). Here
both engines live in one process and take turns at every measurement, in ABBA order (the layout
loaded first, ``--first``, then the other, then the other way round, ...), so a slow spell lands on
both:

- greedy batch 1 (the three prompts of ``bench/engine.py``, one per repeat, in turn);
- one sampled completion and 8 from one prefill (T=0.7, the prompt of ``bench/engine.py``'s n=8
  section): their ratio per layout stands for the n=8 against 8 sequential runs that issue 2
  targets (8 sequential runs are 8 single ones).

Reported: medians, the median of the paired in-place / concat ratios and how many pairs favour
in-place, whether both layouts produce the same greedy tokens, and the RSS each engine added at
load beside the process's peak. Needs the default build (``router models build``).

    python bench/kv_layout.py [--reps 20] [--out-dir bench/results]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import machine  # noqa: E402
from bench.engine import GREEDY_PROMPTS, SAMPLING_PROMPT, load_paired_engines, timed  # noqa: E402
from router.config import Settings  # noqa: E402
from router.engine import Engine, SamplingParams  # noqa: E402
from router.modelbuild.catalog import SMOLLM2  # noqa: E402

LAYOUTS = ("concat", "inplace")
MEASURES = ("greedy", "n1", "n8")
NEW_TOKENS = 64


def run_once(engine: Engine, measure: str, rep: int) -> tuple[float, list[list[int]]]:
    """Completion tokens per second of one call, and its token ids."""
    if measure == "greedy":
        prompt, params, n = GREEDY_PROMPTS[rep % len(GREEDY_PROMPTS)], SamplingParams(max_new_tokens=NEW_TOKENS), 1
    else:
        prompt, n = SAMPLING_PROMPT, 8 if measure == "n8" else 1
        params = SamplingParams(temperature=0.7, max_new_tokens=NEW_TOKENS, seed=100 + rep)
    comps, seconds = timed(lambda: engine.generate(prompt, params, n=n))
    return sum(c.completion_tokens for c in comps) / seconds, [c.token_ids for c in comps]


def measure_pairs(engines: dict[str, Engine], reps: int) -> dict[str, Any]:
    names = list(engines)
    rates: dict[str, dict[str, list[float]]] = {m: {name: [] for name in names} for m in MEASURES}
    greedy_equal = 0
    for rep in range(reps):
        for m in MEASURES:
            tokens: dict[str, list[list[int]]] = {}
            for name in (names if rep % 2 == 0 else names[::-1]):
                r, tokens[name] = run_once(engines[name], m, rep)
                rates[m][name].append(r)
            greedy_equal += m == "greedy" and tokens["concat"] == tokens["inplace"]
        latest = "; ".join(f"{m} " + " / ".join(f"{rates[m][n][-1]:.1f}" for n in names) for m in MEASURES)
        print(f"rep {rep + 1}/{reps}: {latest}", file=sys.stderr, flush=True)
    summary: dict[str, Any] = {}
    for m in MEASURES:
        paired = [b / a for a, b in zip(rates[m]["concat"], rates[m]["inplace"], strict=True)]
        summary[m] = {**{f"{n}_median": round(statistics.median(rates[m][n]), 2) for n in names},
                      "paired_ratio_median": round(statistics.median(paired), 4),
                      "pairs_inplace_faster": sum(p > 1 for p in paired), "pairs": len(paired)}
    for n in names:  # the n=8 against sequential, per layout, from the same repeats
        per_rep = [b / a for a, b in zip(rates["n1"][n], rates["n8"][n], strict=True)]
        summary[f"n8_over_n1_{n}"] = {"median": round(statistics.median(per_rep), 3),
                                      "range": [round(min(per_rep), 3), round(max(per_rep), 3)]}
    return {"rates": rates, "summary": summary, "greedy_equal": greedy_equal, "greedy_runs": reps}


def render(report: dict[str, Any]) -> str:
    m, s = report["machine"], report["summary"]
    lines = [
        "# KV-cache layouts paired in one process: concat (ONNX Attention) vs in-place (GroupQueryAttention)",
        "",
        machine.machine_line(report["date"], m),
        "",
        f"The default build's two graphs (one weights file), each opened by its own engine in one process, "
        f"{report['reps']} repeats, each measure taken by "
        f"both layouts back to back in ABBA order; {report.get('loaded_first', 'concat')} loaded first (the "
        f"engine loaded second has run a few % faster here, so compare both orders); {NEW_TOKENS} new tokens, "
        "CPU provider, "
        f"{report['threads']} intra-op threads. Load average at start {m['load_average_at_start']}, at end "
        f"{report['load_average_at_end']}.",
        "",
        "| measure | concat tokens/s | in-place tokens/s | paired in-place / concat (median) | pairs in-place faster |",
        "|---|---|---|---|---|",
    ]
    names = {"greedy": "greedy batch 1", "n1": "1 sample (T=0.7)", "n8": "8 samples from one prefill"}
    for key, label in names.items():
        r = s[key]
        lines.append(f"| {label} | {r['concat_median']} | {r['inplace_median']} | {r['paired_ratio_median']:.3f} | "
                     f"{r['pairs_inplace_faster']}/{r['pairs']} |")
    lines += [
        "",
        "n=8 over one sample, per repeat (what `bench/engine.py` reports as n=8 against 8 sequential runs): "
        + "; ".join(f"{n} median {s[f'n8_over_n1_{n}']['median']}x (range {s[f'n8_over_n1_{n}']['range'][0]}-"
                    f"{s[f'n8_over_n1_{n}']['range'][1]})" for n in LAYOUTS) + ".",
        "",
        f"Greedy tokens equal between the layouts: {report['greedy_equal']}/{report['greedy_runs']} runs.",
        "",
        "RSS added by loading each engine: " + ", ".join(f"{n} {mb} MB" for n, mb in report["load_rss_mb"].items())
        + f" (the first loaded, {next(iter(report['load_rss_mb']))}, also pays for ONNX Runtime's start-up); "
        f"peak RSS of the process {report['peak_rss_mb']} MB.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--first", choices=LAYOUTS, default="concat",
                   help="the layout loaded first; the report's name says so when it is not concat. The engine "
                        "loaded second ran a few %% faster in A/A and A/B pairs here, so run both orders")
    p.add_argument("--out-dir", type=Path, default=machine.REPO_ROOT / "bench" / "results")
    args = p.parse_args(argv)
    info = machine.machine_info(["onnxruntime", "numpy"])
    def configure(settings: Settings, layout: str) -> None:
        settings.engine.kv_cache = layout
        settings.engine.int8_greedy_head = False  # the layouts alone (bench/greedy_head.py measures that head)

    engines, load_rss = load_paired_engines(sorted(LAYOUTS, key=lambda n: n != args.first), args.threads, configure)
    for engine in engines.values():  # warm-up: first-run allocations and prepacking, every shape
        for m in MEASURES:
            run_once(engine, m, 0)
    result = measure_pairs(engines, args.reps)
    report = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "machine": info, "reps": args.reps,
              "threads": args.threads, "model": SMOLLM2, "layouts": LAYOUTS, "loaded_first": args.first,
              "load_rss_mb": load_rss,
              "peak_rss_mb": round(machine.peak_rss_mb(), 1),
              "load_average_at_end": [round(x, 2) for x in psutil.getloadavg()], **result}
    name = "kv_layout" if args.first == "concat" else f"kv_layout_{args.first}_first"
    machine.write_report(args.out_dir, name, report, render(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
