"""Headline benchmark: does adaptive compute buy heavy search's accuracy for a fraction of its tokens?

Questions: the difficulty label set (router/difficulty/data/labels.jsonl, seed 2) by its splits:
``dev`` = the classifier's training questions (held in), ``test`` = held-out questions of the
training families, ``unseen`` = two families the classifier never saw. ``test+unseen`` is the
headline split.

Phase 1 (SmolLM2, resumable, bench/scratch/adaptive_pool.jsonl): per question one greedy pass
and one pool of 16 samples from one prefill at the ladder's sampling (T 0.3, top-p 0.95, 160 new
tokens), with the reward model's features of the first 8 (so a retrained reward model rescores the
pool without sampling again). Phase 2 (seconds) scores, on the same samples (a paired comparison):
- always-greedy; always-SC@k for k = 2, 4, 8, 16 (majority over the pool's first k); BoN@8 with
  the reward model (weighted vote); the per-query oracle (the cheapest of those methods that is
  right);
- adaptive: the shipped policy (router/policy/default.yaml) deciding per question with the
  committed classifier, its chosen level scored on the pool (self_consistency = the Beta stopping
  rule replayed over waves of 4, so its tokens are the samples it would have drawn), and the
  whole threshold sweep of that policy as a frontier;
- a reference cascade, fitted to nothing: the greedy answer, or BoN@8 with the reward model when
  the greedy pass hit its token cap (no answer in sight), paying for both: what a signal from the
  first answer, rather than from the question, buys on this model.
Accuracies carry Wilson 95% intervals; differences a paired bootstrap interval.

    python bench/adaptive.py [--limit N]        # phase 1 + 2; rerun resumes phase 1
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.machine import machine_info, peak_rss_mb, write_report  # noqa: E402
from router.difficulty.labels import LABELS, label_policy  # noqa: E402
from router.difficulty.scorer import DifficultyScorer  # noqa: E402
from router.domain import Candidate, SamplingParams  # noqa: E402
from router.evaluation.datasets import Question  # noqa: E402
from router.evaluation.runner import read_results  # noqa: E402
from router.policy import DEFAULT_POLICY_FILE, load_policies  # noqa: E402
from router.policy.tuning import paired_bootstrap, wilson_interval  # noqa: E402
from router.strategies.best_of_n import select  # noqa: E402
from router.strategies.sampling import tally  # noqa: E402
from router.strategies.self_consistency import majority, replayed_stop, stop_test  # noqa: E402
from router.verifiers.reward_model import RewardModel, committed_sha256  # noqa: E402

POOL = 16
SC_KS = (2, 4, 8, 16)
BON_N = 8
WAVE = 4
SCRATCH = ROOT / "bench" / "scratch" / "adaptive_pool.jsonl"
POOL_META = SCRATCH.with_suffix(".meta.json")  # peak RSS of the last run that generated samples
RESULTS = ROOT / "bench" / "results"
REWARD_MODEL = RewardModel()  # the committed one, scoring the pool's stored features
SPLITS = {"dev": ("train",), "test": ("test",), "unseen": ("unseen",), "test+unseen": ("test", "unseen")}


def label_questions() -> list[tuple[Question, str]]:
    seen: dict[str, tuple[Question, str]] = {}
    for r in read_results(LABELS):
        if r["id"] not in seen:
            q = Question(id=r["id"], family=r["family"], text=r["question"], answer=r["expected"],
                         source=r["source"], seed=r["seed"])
            if q.family == "comparison":  # the grader reads the two numbers as the choices
                q = replace(q, choices=tuple(t.strip("?,") for t in q.text.split() if t.strip("?,").isdigit()))
            seen[r["id"]] = (q, r["split"])
    return list(seen.values())


# -- phase 1: samples -------------------------------------------------------------------------
def pool_sampling() -> tuple[SamplingParams, SamplingParams]:
    """The ladder's greedy and sampled levels' parameters: what the pool is drawn with."""
    specs = {lv.name: lv for lv in label_policy().levels}
    return specs["single"].sampling, specs["self_consistency"].sampling


def sampling_stamp() -> str:
    return repr(pool_sampling())


def read_pool() -> list[dict]:
    """The pool's rows drawn with the ladder's current sampling and carrying the reward model's
    features (older rows are ignored, so they are drawn again)."""
    if not SCRATCH.exists():
        return []
    rows = [json.loads(line) for line in SCRATCH.open()]
    stamp = sampling_stamp()
    current = [r for r in rows if r.get("sampling") == stamp and "rm_features" in r]
    if len(current) < len(rows):
        print(f"ignoring {len(rows) - len(current)} pool rows drawn with other sampling than {stamp} "
              "or without the reward model's features", file=sys.stderr)
    return current


def build_pool(limit: int | None) -> None:
    from router.config import Settings
    from router.verifiers import ScoredItem
    from router.verifiers.answers import extract_answer
    from router.verifiers.reward_model import all_features

    done = {r["id"] for r in read_pool()}
    todo = [(q, s) for q, s in label_questions() if q.id not in done][:limit]
    if not todo:
        return
    settings = Settings()
    engine = settings.load_engine()
    greedy_params, sample_params = pool_sampling()
    SCRATCH.parent.mkdir(parents=True, exist_ok=True)
    stamp = sampling_stamp()
    start = time.monotonic()
    with SCRATCH.open("a") as f:
        for i, (q, split) in enumerate(todo, 1):
            [g] = engine.generate(q.text, greedy_params)
            comps = engine.generate(q.text, sample_params, n=POOL)
            cands = [Candidate(c, answer=extract_answer(c.text) or "") for c in comps]
            first = cands[:BON_N]
            votes = tally([Candidate(c.completion, answer=c.answer) for c in first])
            items = [ScoredItem(q.text, c.completion, c.answer, votes, BON_N) for c in first]
            row = {
                "id": q.id, "family": q.family, "split": split, "question": q.text, "sampling": stamp,
                "greedy": {"tokens": g.completion_tokens, "correct": q.grade(g.text)[1]},
                "samples": [{"answer": c.answer, "tokens": c.completion.completion_tokens,
                             "correct": q.grade(c.completion.text)[1]} for c in cands],
                "rm_features": [all_features(item) for item in items],
            }
            f.write(json.dumps(row) + "\n")
            f.flush()
            eta = (time.monotonic() - start) / i * (len(todo) - i)
            print(f"\r[{i}/{len(todo)}] pool ETA {eta / 60:.1f} min   ", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    POOL_META.write_text(json.dumps({"peak_rss_mb": round(peak_rss_mb(), 1), "new_questions": len(todo),
                                     "seconds": round(time.monotonic() - start, 1)}) + "\n")


# -- phase 2: scoring -------------------------------------------------------------------------
def _cands(samples: list[dict], scores: list[float] | None = None) -> list[SimpleNamespace]:
    """Stand-ins for Candidate carrying what tally(), majority() and select() read: answer, scores."""
    return [SimpleNamespace(index=i, answer=s["answer"], scores={"reward_model": scores[i]} if scores else {})
            for i, s in enumerate(samples)]


def majority_correct(samples: list[dict]) -> bool:
    cands = _cands(samples)
    votes = tally(cands)
    return bool(votes) and samples[majority(cands, votes).index]["correct"]


def adaptive_sc(samples: list[dict], budget: int = 8, confidence: float = 0.95) -> tuple[bool, int]:
    """The self_consistency level: waves of 4 until the Beta rule is sure or 8 are drawn."""
    n = replayed_stop([s["answer"] for s in samples[:budget]], WAVE, stop_test("beta", WAVE, confidence))
    return majority_correct(samples[:n]), sum(s["tokens"] for s in samples[:n])


def bon_rm(samples: list[dict], scores: list[float]) -> bool:
    """The best_of_n_rm level: the strategy's own weighted selection over the first 8 samples."""
    cands = _cands(samples[:BON_N], scores)
    tally(cands)  # merge equal answers under one spelling, as the strategy's sampler does
    return samples[select(cands, "reward_model", "weighted").index]["correct"]


def method_outcomes(row: dict) -> dict[str, tuple[bool, int]]:
    s = row["samples"]
    out = {"greedy": (row["greedy"]["correct"], row["greedy"]["tokens"])}
    for k in SC_KS:
        out[f"SC@{k}"] = (majority_correct(s[:k]), sum(x["tokens"] for x in s[:k]))
    out["BoN@8 RM"] = (bon_rm(s, REWARD_MODEL.score_features(row["rm_features"])), sum(x["tokens"] for x in s[:BON_N]))
    out["adaptive SC@<=8"] = adaptive_sc(s)
    g_right, g_tokens = out["greedy"]
    if g_tokens >= GREEDY_CAP:  # the greedy pass ran out of tokens: escalate, and pay for both
        bon_right, bon_tokens = out["BoN@8 RM"]
        out[CASCADE] = (bon_right, g_tokens + bon_tokens)
    else:
        out[CASCADE] = (g_right, g_tokens)
    return out


LEVEL_METHOD = {"single": "greedy", "self_consistency": "adaptive SC@<=8", "best_of_n_rm": "BoN@8 RM"}
# A cascade on a signal the greedy pass gives for free, fitted to nothing: the reference for what
# looking at the first answer (rather than the question) buys on this model.
CASCADE = "cascade: greedy, then BoN@8 RM if greedy hit its token cap"
GREEDY_CAP = pool_sampling()[0].max_new_tokens
UNIFORM = ("greedy", *(f"SC@{k}" for k in SC_KS), "BoN@8 RM")


def summarise(correct: np.ndarray, tokens: np.ndarray) -> dict:
    lo, hi = wilson_interval(int(correct.sum()), len(correct))
    return {"accuracy": round(float(correct.mean()), 4), "ci95": [round(lo, 4), round(hi, 4)],
            "mean_tokens": round(float(tokens.mean()), 1), "n": int(len(correct))}


def score(rows: list[dict]) -> dict:
    scorer = DifficultyScorer()
    policies = load_policies(DEFAULT_POLICY_FILE)
    policy = policies.get("")
    routed = [lv for lv in policy.levels if lv.name in scorer.levels]
    outcomes = [method_outcomes(r) for r in rows]
    success = scorer.predict_many([r["question"] for r in rows])
    names = list(scorer.levels)
    report: dict = {"policy": f"{policy.name}@{policy.version}", "rule": policy.rule.describe(), "splits": {}}
    for split, members in SPLITS.items():
        idx = [i for i, r in enumerate(rows) if r["split"] in members]
        if not idx:
            continue
        res: dict = {}
        arrays = {}
        for m in UNIFORM:
            c = np.array([outcomes[i][m][0] for i in idx], dtype=float)
            t = np.array([outcomes[i][m][1] for i in idx], dtype=float)
            arrays[m] = (c, t)
            res[m] = summarise(c, t)
        # oracle: the cheapest uniform method that is right (the cheapest method when none is)
        oc, ot = [], []
        for i in idx:
            right = [(outcomes[i][m][1], m) for m in UNIFORM if outcomes[i][m][0]]
            cost = min(right)[0] if right else min(outcomes[i][m][1] for m in UNIFORM)
            oc.append(bool(right))
            ot.append(cost)
        res["oracle"] = summarise(np.array(oc, dtype=float), np.array(ot, dtype=float))
        cc = np.array([outcomes[i][CASCADE][0] for i in idx], dtype=float)
        ct = np.array([outcomes[i][CASCADE][1] for i in idx], dtype=float)
        g_c0, g_t0 = arrays["greedy"]
        res[CASCADE] = {**summarise(cc, ct), "escalated": round(float(np.mean([outcomes[i]["greedy"][1] >= GREEDY_CAP
                                                                                for i in idx])), 3),
                        "vs_greedy": {"accuracy_diff": round(float(cc.mean() - g_c0.mean()), 4),
                                      "ci95": [round(x, 4) for x in paired_bootstrap(cc, g_c0)[1:]],
                                      "token_ratio": round(float(ct.mean() / max(g_t0.mean(), 1e-9)), 3)}}

        def adaptive(target: float | None, idx: list[int] = idx) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
            from router.domain import Hints
            from router.policy import RouteFacts, Rule

            pol = policy if target is None else replace(policy, rule=Rule("threshold", target=target))
            picks = [pol.plan(Hints(), 64, RouteFacts(success=dict(zip(names, success[i].tolist(),
                                                                           strict=True)))).level for i in idx]
            c = np.array([outcomes[i][LEVEL_METHOD[p]][0] for i, p in zip(idx, picks, strict=True)], dtype=float)
            t = np.array([outcomes[i][LEVEL_METHOD[p]][1] for i, p in zip(idx, picks, strict=True)], dtype=float)
            shares = {lv.name: round(picks.count(lv.name) / len(picks), 3) for lv in routed}
            return c, t, shares

        c, t, shares = adaptive(None)
        arrays["adaptive"] = (c, t)
        res["adaptive (shipped policy)"] = {**summarise(c, t), "shares": shares}
        res["sweep"] = []
        for target in np.linspace(0, 1, 21):
            sc, st, sh = adaptive(float(target))
            res["sweep"].append({"target": round(float(target), 2), **summarise(sc, st), "shares": sh})
        best_uniform = max(UNIFORM, key=lambda m: (res[m]["accuracy"], -res[m]["mean_tokens"]))
        bu_c, bu_t = arrays[best_uniform]
        g_c, g_t = arrays["greedy"]
        d_best = paired_bootstrap(c, bu_c)
        d_greedy = paired_bootstrap(c, g_c)
        res["targets"] = {
            "most_accurate_uniform": best_uniform,
            "vs_most_accurate": {
                "accuracy_diff": round(float(c.mean() - bu_c.mean()), 4), "ci95": [round(x, 4) for x in d_best[1:]],
                "token_ratio": round(float(t.mean() / max(bu_t.mean(), 1e-9)), 3),
                "met": bool(c.mean() >= bu_c.mean() - 0.01 and t.mean() <= 0.25 * bu_t.mean()),
            },
            "vs_greedy": {
                "accuracy_diff": round(float(c.mean() - g_c.mean()), 4), "ci95": [round(x, 4) for x in d_greedy[1:]],
                "token_ratio": round(float(t.mean() / max(g_t.mean(), 1e-9)), 3),
                "met": bool(c.mean() >= g_c.mean() + 0.05 and t.mean() <= 2 * g_t.mean()),
            },
        }
        report["splits"][split] = res
    return report


def plot(report: dict, path: Path) -> None:
    from matplotlib.figure import Figure

    splits = [s for s in ("dev", "test+unseen") if s in report["splits"]]
    fig = Figure(figsize=(6 * len(splits), 5.2))
    for k, split in enumerate(splits):
        ax = fig.add_subplot(1, len(splits), k + 1)
        res = report["splits"][split]
        for m in (*UNIFORM, "oracle"):
            r = res[m]
            ax.errorbar(r["mean_tokens"], r["accuracy"], yerr=[[r["accuracy"] - r["ci95"][0]],
                                                               [r["ci95"][1] - r["accuracy"]]],
                        fmt="o" if m != "oracle" else "*", capsize=3, label=m)
        sweep = res["sweep"]
        ax.plot([p["mean_tokens"] for p in sweep], [p["accuracy"] for p in sweep], "-", color="grey",
                label="adaptive, threshold sweep")
        a = res["adaptive (shipped policy)"]
        ax.plot([a["mean_tokens"]], [a["accuracy"]], "D", color="red", markersize=9, label="adaptive (shipped)")
        ax.set_xscale("log")
        ax.set_xlabel("mean completion tokens per question")
        ax.set_ylabel("accuracy")
        ax.set_title(f"{split} ({a['n']} questions)")
        ax.grid(alpha=0.3)
    handles, labels = fig.axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="lower center", ncol=5)
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=None, help="at most this many new questions in phase 1")
    args = ap.parse_args(argv)
    t0 = time.monotonic()
    build_pool(args.limit)
    rows = read_pool()
    report = score(rows)
    info = machine_info(("onnxruntime", "numpy", "scikit-learn"))
    pool_meta = json.loads(POOL_META.read_text()) if POOL_META.exists() else {}
    report.update(date=datetime.now(UTC).isoformat(timespec="seconds"), machine=info, questions=len(rows),
                  peak_rss_mb=round(peak_rss_mb(), 1), pool_generation=pool_meta,
                  reward_model_sha256=committed_sha256(),
                  wall_s_this_run=round(time.monotonic() - t0, 1))
    lines = [f"# Adaptive compute — headline benchmark · {report['date']} · commit {str(info['git_commit'])[:12]}", "",
             f"SmolLM2-135M-Instruct (ONNX, CPU), {len(rows)} questions of the label set; policy {report['policy']} "
             f"({report['rule']}); one greedy pass and one pool of {POOL} samples per question, every method scored "
             f"on the same samples; reward model {report['reward_model_sha256'][:12]}. "
             f"Peak RSS {report['peak_rss_mb']} MB in this run; "
             f"{pool_meta.get('peak_rss_mb', '?')} MB in the last run that generated samples (model loaded). "
             f"Machine: {info['cpu']}, "
             f"{info['logical_cores']} cores. Plot: `adaptive.png`.", ""]
    for split, res in report["splits"].items():
        lines += [f"## {split}", "", "| method | accuracy | 95% CI | mean tokens |", "|---|---|---|---|"]
        for m in (*UNIFORM, "oracle", "adaptive (shipped policy)", CASCADE):
            r = res[m]
            extra = f" ({', '.join(f'{k} {v:.0%}' for k, v in r['shares'].items())})" if "shares" in r else ""
            extra += f" (escalated {r['escalated']:.0%})" if "escalated" in r else ""
            lines.append(f"| {m}{extra} | {r['accuracy']:.3f} | [{r['ci95'][0]:.3f}, {r['ci95'][1]:.3f}] | "
                         f"{r['mean_tokens']:.0f} |")
        best = max(res["sweep"], key=lambda p: (p["accuracy"], -p["mean_tokens"]))
        tg = res["targets"]
        vb, vg, vc = tg["vs_most_accurate"], tg["vs_greedy"], res[CASCADE]["vs_greedy"]
        lines += ["", f"Best point of the threshold sweep here (chosen after the fact, for reference): target "
                  f"{best['target']}: {best['accuracy']:.3f} at {best['mean_tokens']:.0f} tokens.",
                  f"- Adaptive vs the most accurate uniform level ({tg['most_accurate_uniform']}): "
                  f"{vb['accuracy_diff'] * 100:+.1f} pt [{vb['ci95'][0] * 100:+.1f}, {vb['ci95'][1] * 100:+.1f}] at "
                  f"{vb['token_ratio']:.2f}x its tokens; target within 1 pt at <= 0.25x: "
                  f"{'met' if vb['met'] else 'NOT met'}.",
                  f"- Adaptive vs greedy: {vg['accuracy_diff'] * 100:+.1f} pt [{vg['ci95'][0] * 100:+.1f}, "
                  f"{vg['ci95'][1] * 100:+.1f}] at {vg['token_ratio']:.2f}x its tokens; target >= +5 pt at <= 2x: "
                  f"{'met' if vg['met'] else 'NOT met'}.",
                  f"- Cascade vs greedy (reference, not the policy): {vc['accuracy_diff'] * 100:+.1f} pt "
                  f"[{vc['ci95'][0] * 100:+.1f}, {vc['ci95'][1] * 100:+.1f}] at {vc['token_ratio']:.2f}x its tokens.",
                  ""]
    write_report(RESULTS, "adaptive", report, "\n".join(lines) + "\n")
    plot(report, RESULTS / "adaptive.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
