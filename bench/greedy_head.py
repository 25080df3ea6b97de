"""Greedy decoding on the int8 head against the float32 head, paired in one process.

The default build's in-place graph can run its LM head on an int8 copy for greedy steps and
recompute in float32 only the tokens that could be the argmax, or likely ones
(``router/engine/greedy_head.py``). This bench opens that graph twice, with
``engine.int8_greedy_head`` on and off, and lets both take turns in ABBA order (the int8 engine
loads first by default: the engine loaded second has run a few % faster here, ``kv_layout.md``),
on the three greedy prompts of ``bench/engine.py``, 64 new tokens each. Reported: medians, the
median of the paired ratios and how many pairs favour the int8 head, whether the tokens are equal,
the largest log-probability difference, how many logits a step recomputed, and the RSS each
engine added at load beside the process's peak. Needs the default build (``router models build``).

    python bench/greedy_head.py [--reps 12] [--first {int8,float32}] [--out-dir bench/results]
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
from bench.engine import GREEDY_PROMPTS, load_paired_engines, timed  # noqa: E402
from router.config import Settings  # noqa: E402
from router.engine import Completion, Engine, SamplingParams  # noqa: E402
from router.modelbuild.catalog import SMOLLM2  # noqa: E402

HEADS = ("int8", "float32")
NEW_TOKENS = 64


def run_once(engine: Engine) -> tuple[float, list[Completion]]:
    """Completion tokens per second over the three greedy prompts, and the completions."""
    params = SamplingParams(max_new_tokens=NEW_TOKENS)
    comps, seconds = timed(lambda: [engine.generate(p, params)[0] for p in GREEDY_PROMPTS])
    return sum(c.completion_tokens for c in comps) / seconds, comps


def measure_pairs(engines: dict[str, Engine], reps: int) -> dict[str, Any]:
    names = list(engines)
    rates: dict[str, list[float]] = {name: [] for name in names}
    equal, logprob_gap = 0, 0.0
    for rep in range(reps):
        comps: dict[str, list[Completion]] = {}
        for name in (names if rep % 2 == 0 else names[::-1]):
            rate, comps[name] = run_once(engines[name])
            rates[name].append(rate)
        equal += [c.token_ids for c in comps["int8"]] == [c.token_ids for c in comps["float32"]]
        for a, b in zip(comps["int8"], comps["float32"], strict=True):
            if a.token_ids == b.token_ids and a.logprobs:
                logprob_gap = max(logprob_gap, max(abs(x - y) for x, y in zip(a.logprobs, b.logprobs, strict=True)))
        print(f"rep {rep + 1}/{reps}: " + " / ".join(f"{n} {rates[n][-1]:.1f}" for n in names), file=sys.stderr,
              flush=True)
    paired = [a / b for a, b in zip(rates["int8"], rates["float32"], strict=True)]
    stats = engines["int8"].stats
    return {
        "rates": rates,
        "summary": {**{f"{n}_median": round(statistics.median(rates[n]), 2) for n in names},
                    "paired_ratio_median": round(statistics.median(paired), 4),
                    "paired_ratio_range": [round(min(paired), 3), round(max(paired), 3)],
                    "pairs_int8_faster": sum(p > 1 for p in paired), "pairs": len(paired)},
        "tokens_equal": equal, "runs": reps, "max_logprob_difference": round(logprob_gap, 6),
        "int8_steps": stats.int8_head_steps,
        "recomputed_per_step": round(stats.int8_head_recomputed / max(1, stats.int8_head_steps), 1),
    }


def render(report: dict[str, Any]) -> str:
    m, s = report["machine"], report["summary"]
    return "\n".join([
        "# Greedy decoding: the int8 head against the float32 head, paired in one process",
        "",
        machine.machine_line(report["date"], m),
        "",
        f"The default build's in-place graph opened twice (`engine.int8_greedy_head` on / off), {report['reps']} "
        f"repeats of the three greedy prompts of `bench/engine.py` ({NEW_TOKENS} new tokens each) in ABBA order, "
        f"{report['loaded_first']} head loaded first; CPU provider, {report['threads']} intra-op threads. Load "
        f"average at start {m['load_average_at_start']}, at end {report['load_average_at_end']}.",
        "",
        "| head | greedy tokens/s (median) |",
        "|---|---|",
        f"| float32 | {s['float32_median']} |",
        f"| int8, candidates recomputed in float32 | {s['int8_median']} |",
        "",
        f"Paired int8 / float32: median {s['paired_ratio_median']:.3f} (range {s['paired_ratio_range'][0]}-"
        f"{s['paired_ratio_range'][1]}); the int8 head faster in {s['pairs_int8_faster']}/{s['pairs']} pairs.",
        "",
        f"Greedy tokens equal on all three prompts: {report['tokens_equal']}/{report['runs']} repeats. Largest "
        f"difference of a token's log-probability: {report['max_logprob_difference']}. A greedy step recomputed "
        f"{report['recomputed_per_step']} of 49152 logits in float32 on average ({report['int8_steps']} steps).",
        "",
        "RSS added by loading each engine: " + ", ".join(f"{n} {mb} MB" for n, mb in report["load_rss_mb"].items())
        + f"; peak RSS of the process {report['peak_rss_mb']} MB.",
    ]) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reps", type=int, default=12)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--first", choices=HEADS, default="int8", help="the head loaded first")
    p.add_argument("--out-dir", type=Path, default=machine.REPO_ROOT / "bench" / "results")
    args = p.parse_args(argv)
    info = machine.machine_info(["onnxruntime", "numpy"])
    def configure(settings: Settings, head: str) -> None:
        settings.engine.kv_cache = "inplace"
        settings.engine.int8_greedy_head = head == "int8"

    engines, load_rss = load_paired_engines(sorted(HEADS, key=lambda n: n != args.first), args.threads, configure)
    if not engines["int8"].int8_greedy_head:
        raise SystemExit("the default build has no int8 head: rebuild it with `router models build`")
    for engine in engines.values():  # warm-up
        run_once(engine)
    engines["int8"].stats.int8_head_steps = engines["int8"].stats.int8_head_recomputed = 0
    result = measure_pairs(engines, args.reps)
    report = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "machine": info, "reps": args.reps,
              "threads": args.threads, "model": SMOLLM2, "loaded_first": args.first, "load_rss_mb": load_rss,
              "peak_rss_mb": round(machine.peak_rss_mb(), 1),
              "load_average_at_end": [round(x, 2) for x in psutil.getloadavg()], **result}
    machine.write_report(args.out_dir, "greedy_head" if args.first == "int8" else "greedy_head_float32_first",
                         report, render(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
