"""Decision overhead in process: experiment arm + difficulty classifier + policy, per query.

Rows (all in this one process and run, same questions, one query per call):
- ``classifier: ONNX Runtime`` — the served scorer (router/difficulty/scorer.py) on one query;
- ``classifier: scikit-learn`` — the peer: the same model refitted from the committed labels,
  ``predict_proba`` on one query (sparse TF-IDF + the calibrated logistic regressions);
- ``experiment arm`` and ``policy plan`` alone;
- ``whole decision`` — :meth:`router.policy.decider.Decider.decide` as the request path calls it,
  with an experiment enabled and one shadow arm (arm + classify + plan + shadow plan).
Timings are per call over cycling real label questions, after a warm-up; p50/p99 in µs.
Target: whole decision p50 <= 50 µs and p99 <= 200 µs.

    python bench/routing.py [--calls 20000]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from bench.machine import machine_info, peak_rss_mb, write_report  # noqa: E402
from router.difficulty.labels import LABELS  # noqa: E402
from router.difficulty.scorer import DifficultyScorer  # noqa: E402
from router.difficulty.train import DifficultyModel, load_labels  # noqa: E402
from router.domain import Hints  # noqa: E402
from router.policy import DEFAULT_POLICY_FILE, RouteFacts, parse_policies  # noqa: E402
from router.policy.decider import Decider  # noqa: E402

RESULTS = ROOT / "bench" / "results"
TARGET_P50_US, TARGET_P99_US = 50.0, 200.0


def per_call_us(fn: Callable[[str], object], texts: list[str], calls: int) -> list[float]:
    for t in texts[:200]:
        fn(t)
    out = []
    n = len(texts)
    gc.disable()
    try:
        for i in range(calls):
            text = texts[i % n]
            start = time.perf_counter_ns()
            fn(text)
            out.append((time.perf_counter_ns() - start) / 1000)
    finally:
        gc.enable()
    return out


def summary(samples: list[float]) -> dict[str, float]:
    q = statistics.quantiles(samples, n=100, method="inclusive")
    return {"p50_us": round(statistics.median(samples), 2), "p99_us": round(q[98], 2),
            "mean_us": round(statistics.fmean(samples), 2), "calls": len(samples)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=20_000)
    args = ap.parse_args(argv)

    labels = load_labels(LABELS)
    texts = list(labels.texts)
    scorer = DifficultyScorer()
    train = labels.select("train")
    rss_before_sklearn = peak_rss_mb()
    peer = DifficultyModel(**scorer.hyperparameters)
    peer.fit([t for t, m in zip(texts, train, strict=True) if m], labels.y[train], labels.levels)

    raw = yaml.safe_load(DEFAULT_POLICY_FILE.read_text())
    raw["experiments"][0]["enabled"] = True  # arm + shadow plan: the heaviest decision path
    policies = parse_policies(raw, "bench")
    decider = Decider(policies, scorer, max_samples=64, accelerated=True)
    adaptive = policies.get("adaptive")
    experiment = policies.active_experiment
    success = scorer.predict(texts[0])
    facts = RouteFacts(success=success)
    counter = iter(range(10**9))

    rows = {
        "classifier: ONNX Runtime (served)": per_call_us(scorer.predict, texts, args.calls),
        "classifier: scikit-learn predict_proba (peer)": per_call_us(lambda t: peer.predict_proba([t]), texts,
                                                                     max(2000, args.calls // 10)),
        "experiment arm (sha256 assignment)": per_call_us(lambda t: experiment.assign(t), texts, args.calls),
        "policy plan (threshold rule)": per_call_us(lambda t: adaptive.plan(Hints(), 64, facts), texts, args.calls),
        "whole decision (arm + classify + plan + shadow)": per_call_us(
            lambda t: decider.decide(t, Hints(), request_id=f"r{next(counter)}"), texts, args.calls),
    }
    results = {name: summary(s) for name, s in rows.items()}
    onnx_p50 = results["classifier: ONNX Runtime (served)"]["p50_us"]
    sk_p50 = results["classifier: scikit-learn predict_proba (peer)"]["p50_us"]
    whole = results["whole decision (arm + classify + plan + shadow)"]
    met = whole["p50_us"] <= TARGET_P50_US and whole["p99_us"] <= TARGET_P99_US
    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_info(["onnxruntime", "scikit-learn", "numpy"]),
        "questions": len(texts),
        "classifier_version": scorer.version,
        "levels": list(scorer.levels),
        "results": results,
        "onnx_speedup_vs_sklearn_p50": round(sk_p50 / onnx_p50, 1),
        "target": {"p50_us": TARGET_P50_US, "p99_us": TARGET_P99_US, "met": met},
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "peak_rss_mb_before_sklearn_peer": round(rss_before_sklearn, 1),
    }
    m = report["machine"]
    lines = [
        f"# Routing decision overhead — {report['date']} · commit {str(m['git_commit'])[:12]}",
        "",
        f"One query per call, cycling {len(texts)} label questions; {args.calls} calls per row "
        f"(the scikit-learn peer {rows['classifier: scikit-learn predict_proba (peer)'].__len__()}). "
        f"Classifier {scorer.version} predicting {', '.join(scorer.levels)}. Machine: {m['cpu']}, "
        f"{m['logical_cores']} cores, {m['ram_gb']} GB; onnxruntime {m['versions']['onnxruntime']}, "
        f"scikit-learn {m['versions']['scikit-learn']}. Peak RSS {report['peak_rss_mb']} MB "
        f"({report['peak_rss_mb_before_sklearn_peer']} MB before fitting the scikit-learn peer).",
        "",
        "| step | p50 µs | p99 µs | mean µs |",
        "|---|---|---|---|",
    ]
    lines += [f"| {name} | {r['p50_us']} | {r['p99_us']} | {r['mean_us']} |" for name, r in results.items()]
    lines += [
        "",
        f"ONNX Runtime scores one query {report['onnx_speedup_vs_sklearn_p50']}x faster than scikit-learn "
        f"(p50 {onnx_p50} vs {sk_p50} µs).",
        f"Whole decision: p50 {whole['p50_us']} µs, p99 {whole['p99_us']} µs; target p50 <= {TARGET_P50_US:.0f} µs "
        f"and p99 <= {TARGET_P99_US:.0f} µs: {'met' if met else 'NOT met'}.",
    ]
    write_report(RESULTS, "routing", report, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
