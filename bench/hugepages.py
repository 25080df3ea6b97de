"""Do transparent huge pages for the model's memory speed up CPU decoding? A controlled A/B.

Where the kernel's THP mode is ``madvise`` (as here), glibc's ``malloc`` backs large allocations
with huge pages only when told to (``GLIBC_TUNABLES=glibc.malloc.hugetlb=1``). Earlier single
pairs of runs suggested 1-24 % faster decoding with it; one pair cannot tell that from the way
this machine's speed drifts between processes. So this script starts fresh processes in
alternating order (off-on, on-off, ...: ABBA, so a slow spell lands on both arms), each loading
the default model and measuring, interleaved, medians of ``--reps``:

- greedy batch 1 (the easy-query path);
- one sampled completion (T=0.7) and 8 from one prefill: their ratio is what ``bench/engine.py``
  reports as n=8 against 8 sequential runs, here per process;

and reports per arm the medians, the paired differences, how many pairs favour huge pages, the
anonymous huge-page memory each process really got (``AnonHugePages``) and its peak RSS.

    python bench/hugepages.py [--pairs 6] [--reps 3] [--out-dir bench/results]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import machine  # noqa: E402

TUNABLE = "glibc.malloc.hugetlb=1"
PROMPT = "Write a short story about a robot who learns to paint."
ARMS = ("off", "on")


def child(reps: int) -> dict[str, Any]:
    """Runs in a fresh process: load the default model, measure, report."""
    from router.config import Settings
    from router.engine import SamplingParams

    engine = Settings().load_engine()
    greedy = SamplingParams(max_new_tokens=64)
    sampled = SamplingParams(temperature=0.7, max_new_tokens=64, seed=1)
    engine.generate(PROMPT, greedy)  # warm-up: first-run allocations and prepacking
    rates: dict[str, list[float]] = {"greedy": [], "n1": [], "n8": []}
    for _ in range(reps):
        for key, params, n in (("greedy", greedy, 1), ("n1", sampled, 1), ("n8", sampled, 8)):
            start = time.perf_counter()
            comps = engine.generate(PROMPT, params, n=n)
            rates[key].append(sum(c.completion_tokens for c in comps) / (time.perf_counter() - start))
    out: dict[str, Any] = {k: statistics.median(v) for k, v in rates.items()}
    out["n8_over_n1"] = out["n8"] / out["n1"]
    out["anon_huge_mb"] = _anon_huge_mb()
    out["peak_rss_mb"] = round(machine.peak_rss_mb(), 1)
    return out


def _anon_huge_mb() -> float | None:
    try:
        for line in Path("/proc/self/smaps_rollup").read_text().splitlines():
            if line.startswith("AnonHugePages:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def run_arm(arm: str, reps: int) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    if arm == "on":
        env["GLIBC_TUNABLES"] = TUNABLE
    proc = subprocess.run([sys.executable, __file__, "--child", "--reps", str(reps)], env=env,
                          capture_output=True, text=True, timeout=900, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"the '{arm}' child failed (exit {proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def summarize(pairs: list[dict[str, dict[str, Any]]]) -> dict[str, Any]:
    keys = ("greedy", "n1", "n8", "n8_over_n1")
    summary: dict[str, Any] = {}
    for key in keys:
        on = [p["on"][key] for p in pairs]
        off = [p["off"][key] for p in pairs]
        change = [a / b - 1 for a, b in zip(on, off, strict=True)]
        summary[key] = {
            "off_median": round(statistics.median(off), 2), "on_median": round(statistics.median(on), 2),
            "off_range": [round(min(off), 2), round(max(off), 2)], "on_range": [round(min(on), 2), round(max(on), 2)],
            "paired_change_median": round(statistics.median(change), 4),
            "pairs_on_faster": sum(c > 0 for c in change), "pairs": len(change),
        }
    return summary


def render(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [
        "# Huge pages for the model's memory: A/B in fresh processes",
        "",
        machine.machine_line(report["date"], m, f"THP mode: {report['thp_mode']}"),
        "",
        f"{report['pairs']} pairs of fresh processes in ABBA order, `on` = `GLIBC_TUNABLES={TUNABLE}`; each "
        f"process loads the default model and measures greedy batch 1, one sampled completion and n=8 from one "
        f"prefill (T=0.7, 64 new tokens), interleaved, median of {report['reps']}.",
        "",
        "| measure | off: median | off: range | on: median | on: range | paired change (median) "
        "| pairs faster with huge pages |",
        "|---|---|---|---|---|---|---|",
    ]
    names = {"greedy": "greedy tokens/s", "n1": "1 sample tokens/s", "n8": "n=8 tokens/s",
             "n8_over_n1": "n=8 / 1 sample"}
    for key, s in report["summary"].items():
        lines.append(f"| {names[key]} | {s['off_median']} | {s['off_range'][0]}-{s['off_range'][1]} | "
                     f"{s['on_median']} | {s['on_range'][0]}-{s['on_range'][1]} | {s['paired_change_median']:+.1%} | "
                     f"{s['pairs_on_faster']}/{s['pairs']} |")
    huge = [p["on"]["anon_huge_mb"] for p in report["runs"]]
    rss = [p[a]["peak_rss_mb"] for p in report["runs"] for a in ARMS]
    off_huge = sorted({p["off"]["anon_huge_mb"] for p in report["runs"]})
    lines += [
        "",
        f"Huge-page memory the `on` processes got (AnonHugePages): {min(huge)}-{max(huge)} MB; the `off` ones: "
        f"{off_huge} MB. Peak RSS per process: {min(rss)}-{max(rss)} MB.",
        "",
        "## Runs",
        "",
        "| pair | order | off: greedy / 1 sample / n=8 | on: greedy / 1 sample / n=8 |",
        "|---|---|---|---|",
    ]
    for i, p in enumerate(report["runs"], 1):
        lines.append(f"| {i} | {' then '.join(p['order'])} | "
                     + " | ".join(" / ".join(f"{p[a][k]:.1f}" for k in ("greedy", "n1", "n8")) for a in ARMS) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pairs", type=int, default=6)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--out-dir", type=Path, default=machine.REPO_ROOT / "bench" / "results")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.reps)))
        return 0
    info = machine.machine_info(["onnxruntime", "numpy"])
    try:
        thp_mode = Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text().strip()
    except OSError:
        thp_mode = "unknown"
    runs = []
    for i in range(args.pairs):
        order = ARMS if i % 2 == 0 else ARMS[::-1]
        pair: dict[str, Any] = {"order": list(order)}
        for arm in order:
            pair[arm] = run_arm(arm, args.reps)
            print(f"pair {i + 1} {arm}: {pair[arm]}", file=sys.stderr, flush=True)
        runs.append(pair)
    report = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "machine": info, "thp_mode": thp_mode,
              "pairs": args.pairs, "reps": args.reps, "runs": runs, "summary": summarize(runs),
              "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
              "parent_peak_rss_mb": round(machine.peak_rss_mb(), 1)}
    machine.write_report(args.out_dir, "hugepages", report, render(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
