"""Accuracy, tokens, samples and latency of the compute ladder on one fixed question set.

Question set: the generated families of router/evaluation/datasets.py (seed 1; the reward model
was trained on seed 0) plus easy reasoning-gym tasks. For each temperature, every question gets
one pool of 16 samples drawn exactly as ``self_consistency`` draws them: one prefill, waves of 4
with the strategy's per-wave seeds. SC@k, BoN@8 and pass@k use the first k samples of that pool,
so every row of a temperature sees the same samples (a paired comparison). Greedy and adaptive
self-consistency are real strategy runs, timed end to end; because the pool is drawn the way the
strategy draws, the adaptive run's samples are the pool's first waves, and the report checks
that they are (``paired``). Latency of pool-based rows is the pool's generation time (plus
verifier time for BoN); SC@k for k < 16 has no latency of its own here.

    python bench/strategies.py [--per-family 10] [--rg 6] [--temperatures 0.3,0.7] [--max-new-tokens N] [--top-p P]
    python bench/strategies.py --replay [--rules beta:3:0.8,esc:2]   # seconds, no model

Each run also writes ``strategies_pools.jsonl`` beside the report: every question's pool (answers as
the strategy reads them, grades, token counts) per temperature. ``--replay`` reads it and prints the
stopping-rules table for any rules (``RULE:WAVE[:CONFIDENCE]``) without drawing a sample: the rows
computed from a pool alone are one function, :func:`pool_rows`, in the run and in the replay.

Sampling budget: by default each sample gets what the served ``self_consistency`` level gives it
(the default policy's ``max_new_tokens`` and ``top_p``), so the rows measure the ladder as it runs.
Runs before d1e84f4 used 64 tokens and ``top_p`` 1.0: a third of the samples stopped at the
limit, and the number their unfinished text ended on was counted as their answer.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.machine import machine_info, peak_rss_mb, write_report  # noqa: E402
from router.config import Settings  # noqa: E402
from router.domain import Candidate, Plan, Query  # noqa: E402
from router.engine import CancelToken, Engine, SamplingParams  # noqa: E402
from router.evaluation.datasets import FAMILIES, REASONING_GYM, Question, generated, reasoning_gym  # noqa: E402
from router.policy.loader import DEFAULT_POLICY_FILE, load_policies  # noqa: E402
from router.policy.tuning import wilson_interval  # noqa: E402
from router.strategies import StrategyContext, get_strategy  # noqa: E402
from router.strategies.sampling import WaveSampler, tally  # noqa: E402
from router.strategies.self_consistency import majority, replayed_stop, stop_test  # noqa: E402
from router.verifiers import ScoredItem, get_verifier  # noqa: E402
from router.verifiers.answers import extract_answer  # noqa: E402

POOL = 16
SC_KS = (2, 4, 8, 16)
BON_N = 8
WAVE = 4
ADAPTIVE_CONFIDENCE = 0.95
# Stopping rules replayed over each pool: (rule, confidence, wave). Beta at three confidences and
# four wave sizes, and ESC's window rule at three window sizes.
REPLAYED_RULES = ((*[("beta", c, w) for w in (4, 3, 2, 1) for c in (0.6, 0.8, 0.95)],
                   *[("esc", None, w) for w in (4, 3, 2)]))
REPLAYED = "replayed "  # the rows of the stopping-rules table start with it
POOLS_FILE = "strategies_pools.jsonl"
ORACLE_WAVES = (WAVE, 1)  # the strategy's wave size, and one sample at a time
ORACLE = "oracle stop (reads the answer key), waves of"
VERIFIERS = ("self_likelihood", "agreement", "lm_judge", "reward_model")


def questions(per_family: int, rg: int) -> list[Question]:
    out = [q for f in FAMILIES for q in generated(f, per_family, seed=1)]
    return out + [q for name in REASONING_GYM for q in reasoning_gym(name, rg, seed=1)]


def replayed_name(rule: str, confidence: float | None, wave: int) -> str:
    if rule == "esc":
        return f"{REPLAYED}esc, windows of {wave}"
    return f"{REPLAYED}{rule} {confidence}, waves of {wave}"


def majority_index(answers: Sequence[str]) -> int | None:
    """The first sample carrying the most-voted answer (equal answers merged, abstentions out), as
    ``self_consistency`` chooses; None when nobody answered."""
    drawn = [SimpleNamespace(index=i, answer=a) for i, a in enumerate(answers)]  # what tally() reads and merges
    votes = tally(drawn)
    # With no votes the strategy falls back to the likeliest sample; a pool keeps no likelihoods.
    return majority(drawn, votes).index if votes else None


Rule = tuple[str, float | None, int]  # (stop rule, confidence, wave)
PoolRow = tuple[bool, int, int]  # (right, tokens, samples)


def pool_rows(answers: Sequence[str], right: Sequence[bool], tokens: Sequence[int],
              rules: Sequence[Rule] = REPLAYED_RULES) -> dict[str, PoolRow]:
    """Every row that one question's pool decides alone: sample@1, each stopping rule replayed in
    the pool's order, SC@k and pass@k, and the oracle ceiling. Name -> (right, tokens, samples)."""
    def sc_right(k: int) -> bool:
        i = majority_index(answers[:k])
        return i is not None and right[i]

    rows = {"sample@1": (right[0], tokens[0], 1)}
    for rule, conf, wave in rules:
        k = replayed_stop(answers, wave, stop_test(rule, wave, conf or 0.0))
        rows[replayed_name(rule, conf, wave)] = (sc_right(k), sum(tokens[:k]), k)
    for k in SC_KS:
        rows[f"SC@{k}"] = (sc_right(k), sum(tokens[:k]), k)
        rows[f"pass@{k}"] = (any(right[:k]), sum(tokens[:k]), k)
    for wave in ORACLE_WAVES:
        k = oracle_stop(sc_right, wave)
        rows[f"{REPLAYED}{ORACLE} {wave}"] = (sc_right(POOL), sum(tokens[:k]), k)
    return rows


def oracle_stop(right_at: Callable[[int], bool], wave: int, pool: int = POOL) -> int:
    """The fewest samples, in steps of ``wave``, whose majority is graded as the whole pool's is.

    ``right_at(k)``: is the majority of the first ``k`` samples right? This reads the answer key,
    so no stopping rule can do it. It bounds what any rule that keeps SC@``pool``'s grades (the
    Adaptive-Consistency aim: stop once more samples would not change the answer) can save.
    """
    final = right_at(pool)
    return next((k for k in range(wave, pool, wave) if right_at(k) == final), pool)


Rows = dict[str, dict[str, list[float]]]  # row name -> per-question correct, tokens, samples, latency


def add_row(rows: Rows, name: str, correct: bool, tokens: int, samples: int, latency: float | None = None) -> None:
    r = rows.setdefault(name, {"correct": [], "tokens": [], "samples": [], "latency": []})
    r["correct"].append(float(correct))
    r["tokens"].append(tokens)
    r["samples"].append(samples)
    if latency is not None:
        r["latency"].append(latency)


def served_sampling(level: str = "self_consistency") -> SamplingParams:
    """The sampling of ``level`` in the default policy: what a served request of that level gets."""
    return load_policies(DEFAULT_POLICY_FILE).get("").level(level).sampling


def run_temperature(engine: Engine, qs: list[Question], temperature: float, max_new: int, top_p: float) -> dict:
    rows: Rows = {}

    def add(name: str, correct: bool, tokens: int, samples: int, latency: float | None) -> None:
        add_row(rows, name, correct, tokens, samples, latency)

    params = SamplingParams(temperature=temperature, top_p=top_p, max_new_tokens=max_new, seed=0)
    paired = 0  # questions whose adaptive run drew exactly the pool's first samples
    pools: list[dict] = []
    for i, q in enumerate(qs):
        start = time.perf_counter()
        [g] = engine.generate(q.text, SamplingParams(max_new_tokens=max_new))
        add("greedy", q.grade(g.text)[1], g.completion_tokens, 1, time.perf_counter() - start)

        start = time.perf_counter()
        sampler = WaveSampler(StrategyContext(engine=engine, cancel=CancelToken()), Query(text=q.text), params)
        sampler.draw_waves(POOL, WAVE)
        comps = [c.completion for c in sampler.candidates]
        pool_s = time.perf_counter() - start
        # Strategies vote on what their own extractor reads (no choices); the grader then judges the
        # chosen candidate's text strictly (with the question's choices).
        right = [q.grade(c.text)[1] for c in comps]
        cands = [Candidate(c, answer=extract_answer(c.text) or "") for c in comps]

        def correct(cand: Candidate | None, right: list[bool] = right) -> bool:
            return cand is not None and right[cand.completion.index]

        pool = {"temperature": temperature, "id": q.id, "family": q.family, "answers": [c.answer for c in cands],
                "right": right, "tokens": [c.completion_tokens for c in comps]}
        pools.append(pool)
        for name, (ok, tokens, k) in pool_rows(pool["answers"], right, pool["tokens"]).items():
            add(name, ok, tokens, k, pool_s if name == f"SC@{POOL}" else None)
        first = [Candidate(c.completion, answer=c.answer) for c in cands[:BON_N]]
        votes = tally(first)
        items = [ScoredItem(q.text, c.completion, c.answer, votes, BON_N) for c in first]
        for name in VERIFIERS:
            t0 = time.perf_counter()
            scores = get_verifier(name).score(items, engine)
            verify_s = time.perf_counter() - t0
            pairs = list(zip(scores, first, strict=True))
            best = max([p for p in pairs if p[1].answer] or pairs, key=lambda p: p[0])[1]
            tokens = sum(c.completion.completion_tokens for c in first)
            add(f"BoN@8 {name}", correct(best), tokens, BON_N, pool_s + verify_s)
            weight: dict[str, float] = {}
            for score, c in pairs:
                if c.answer:
                    weight[c.answer] = weight.get(c.answer, 0.0) + score
            win = max(weight, key=lambda a: weight[a]) if weight else None
            top = max((p for p in pairs if p[1].answer == win), key=lambda p: p[0])[1] if win else None
            add(f"weighted@8 {name}", correct(top), tokens, BON_N, None)

        plan = Plan("adaptive", "self_consistency", POOL, params, "bench", "0", "bench",
                    options={"wave": WAVE, "stop_rule": "beta", "confidence": ADAPTIVE_CONFIDENCE})
        start = time.perf_counter()
        out = get_strategy("self_consistency").run(Query(text=q.text), plan,
                                                   StrategyContext(engine=engine, cancel=CancelToken()))
        add("adaptive SC (<=16)", bool(out.answer) and q.grade(out.text)[1], out.usage.completion_tokens,
            out.usage.samples, time.perf_counter() - start)
        paired += [c.completion.token_ids for c in out.candidates] == [c.token_ids for c in comps[: out.usage.samples]]
        print(f"  T={temperature} {i + 1}/{len(qs)} {q.family}", flush=True)
    return {"rows": summarize(rows), "paired": paired, "questions": len(qs), "pools": pools}


def summarize(rows: Rows) -> dict[str, dict]:
    return {
        name: {
            "accuracy": round(statistics.mean(r["correct"]), 3),
            "accuracy_ci95": [round(x, 3) for x in wilson_interval(sum(r["correct"]), len(r["correct"]))],
            "mean_tokens": round(statistics.mean(r["tokens"]), 1),
            "mean_samples": round(statistics.mean(r["samples"]), 2),
            "min_samples": min(r["samples"]),
            "max_samples": max(r["samples"]),
            "p50_latency_s": round(statistics.median(r["latency"]), 2) if r["latency"] else None,
        }
        for name, r in rows.items()
    }


def replay(pools: Sequence[dict], rules: Sequence[Rule]) -> dict[str, dict[str, dict]]:
    """Per temperature, the summarized rows of :func:`pool_rows` over saved pools."""
    by_t: dict[str, Rows] = {}
    for pool in pools:
        rows = by_t.setdefault(str(pool["temperature"]), {})
        for name, (ok, tokens, k) in pool_rows(pool["answers"], pool["right"], pool["tokens"], rules).items():
            add_row(rows, name, ok, tokens, k)
    return {t: summarize(rows) for t, rows in by_t.items()}


def parse_rules(spec: str) -> list[Rule]:
    """``beta:3:0.8,esc:2`` -> [("beta", 0.8, 3), ("esc", None, 2)]: RULE:WAVE[:CONFIDENCE]."""
    rules = []
    for item in filter(None, (x.strip() for x in spec.split(","))):
        rule, *rest = item.split(":")
        stop_test(rule, 1, 0.0)  # refuses an unknown rule
        try:
            wave, conf = int(rest[0]), (float(rest[1]) if len(rest) > 1 else None)
        except (IndexError, ValueError):
            raise ValueError(f"{item}: write RULE:WAVE[:CONFIDENCE], e.g. beta:3:0.8 or esc:2") from None
        if wave < 1 or len(rest) > 2 or (conf is not None and not 0.0 <= conf <= 1.0):
            raise ValueError(f"{item}: the wave must be >= 1 and the confidence in [0, 1]")
        rules.append((rule, conf if conf is not None else (ADAPTIVE_CONFIDENCE if rule == "beta" else None), wave))
    return rules


def adaptive_met(sc16: dict, adaptive: dict) -> bool:
    return sc16["accuracy"] - adaptive["accuracy"] <= 0.005 and 16 / adaptive["mean_samples"] >= 3


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--per-family", type=int, default=10)
    parser.add_argument("--rg", type=int, default=6)
    parser.add_argument("--temperatures", default="0.3,0.7")
    served = served_sampling()
    parser.add_argument("--max-new-tokens", type=int, default=served.max_new_tokens,
                        help="per sample and for greedy (default: the served self_consistency level's)")
    parser.add_argument("--top-p", type=float, default=served.top_p,
                        help="nucleus sampling of the pools (default: the served self_consistency level's)")
    parser.add_argument("--out-dir", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--render", action="store_true", help="only rewrite strategies.md from strategies.json")
    parser.add_argument("--replay", action="store_true",
                        help="print the stopping-rules table from the saved pools (strategies_pools.jsonl)")
    parser.add_argument("--rules", default="", help="with --replay: RULE:WAVE[:CONFIDENCE],... (default: the bench's)")
    args = parser.parse_args()
    if args.replay:
        try:
            rules = parse_rules(args.rules) if args.rules else list(REPLAYED_RULES)
        except ValueError as exc:
            parser.error(f"--rules: {exc}")
        pools_file = args.out_dir / POOLS_FILE
        if not pools_file.is_file():
            parser.error(f"{pools_file} is missing: a full run of this bench writes it")
        pools = [json.loads(line) for line in pools_file.read_text().splitlines() if line.strip()]
        for t, res in replay(pools, rules).items():
            n = sum(str(p["temperature"]) == t for p in pools)
            print("\n".join([f"## T = {t} ({n} questions; SC@16 {res['SC@16']['accuracy']})",
                             *stopping_table(res, res["SC@16"], in_report=False), ""]))
        return 0
    if args.render:
        text = render(json.loads((args.out_dir / "strategies.json").read_text()))
        (args.out_dir / "strategies.md").write_text(text)
        print(text)
        return 0
    engine = Engine.load(Settings().model_dir())
    qs = questions(args.per_family, args.rg)
    results = {}
    pools = []
    for t in (float(x) for x in args.temperatures.split(",")):
        results[str(t)] = run_temperature(engine, qs, t, args.max_new_tokens, args.top_p)
        pools += results[str(t)].pop("pools")
    info = machine_info(("onnxruntime", "numpy", "scikit-learn", "reasoning-gym"))
    commit = (info["git_commit"] or "unknown")[:12]
    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"), "commit": commit, "machine": info,
        "model": engine.name, "provider": engine.providers[0],
        "questions": len(qs), "families": sorted({q.family for q in qs}), "max_new_tokens": args.max_new_tokens,
        "top_p": args.top_p,
        "peak_rss_mb": round(peak_rss_mb(), 1), "results": results,
    }
    write_report(args.out_dir, "strategies", report, render(report))
    (args.out_dir / POOLS_FILE).write_text("".join(json.dumps(p) + "\n" for p in pools))
    return 0


def oracle_lines(res: dict) -> list[str]:
    """The stopping ceiling, when the report has it (reports before 2026-11-30 do not)."""
    def row(w: int) -> dict | None:  # reports before 32d42ee name it without the prefix
        return res.get(f"{REPLAYED}{ORACLE} {w}") or res.get(f"{ORACLE} {w}")

    oracles = [(w, row(w)) for w in ORACLE_WAVES if row(w)]
    if not oracles:
        return []
    parts = [f"{r['mean_samples']} samples ({POOL / max(r['mean_samples'], 1e-9):.1f}x fewer) in waves of {w}"
             for w, r in oracles]
    return [f"Ceiling for any stopping rule that keeps SC@16's grades (`oracle_stop`, which reads the answer "
            f"key): {'; '.join(parts)}."]


def stopping_table(res: dict, sc16: dict, in_report: bool = True) -> list[str]:
    """Every replayed stopping rule against SC@16 on the same pool (the samples and their order)."""
    rows = [(n, r) for n, r in res.items() if n.startswith(REPLAYED)]
    if not rows:
        return []
    out = ["", "Stopping rules replayed over the same pools (each question's 16 samples in drawn order"
           + ("; `beta 0.95, waves of 4` is the adaptive run above, replayed). " if in_report else "). ")
           + "A rule that meets the target here was picked on the questions it is judged on: a candidate to "
           "confirm on other questions, not a result.", "",
           "| stopping rule | accuracy | vs SC@16 | mean samples | fewer samples than SC@16 "
           "| within 0.5 pt with >= 3x fewer |",
           "|---|---|---|---|---|---|"]
    for n, r in rows:
        met = "— (reads the answers)" if ORACLE in n else ("yes" if adaptive_met(sc16, r) else "no")
        if ORACLE not in n and "max_samples" in r and r["min_samples"] == r["max_samples"]:  # rows since 3a3ebd1
            met = f"— (stops at {r['max_samples']:g} on every question: a fixed SC@{r['max_samples']:g}, not adaptive)"
        out.append(f"| {n[len(REPLAYED):]} | {r['accuracy']} | {(r['accuracy'] - sc16['accuracy']) * 100:+.1f} pt | "
                   f"{r['mean_samples']} | {POOL / max(r['mean_samples'], 1e-9):.2f}x | {met} |")
    return out


def render(report: dict) -> str:
    info, qs_n, max_new = report["machine"], report["questions"], report["max_new_tokens"]
    lines = [f"# Strategies benchmark — {report['date']} · commit {report['commit']} · {report['model']} on "
             f"{report['provider']}",
             "", f"{qs_n} questions ({', '.join(report['families'])}), {max_new} new tokens at most, "
             f"top_p {report.get('top_p', 1.0)} (the pools), pools of {POOL} samples per question and temperature; "
             f"peak RSS {report['peak_rss_mb']} MB. "
             f"Machine: {info['cpu']}, {info['logical_cores']} cores, {info['ram_gb']} GB.", ""]
    for t, run in report["results"].items():
        res = run["rows"]
        lines += [f"## T = {t}", "", "| strategy | accuracy | 95% CI | mean tokens | mean samples | p50 latency s |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {n} | {r['accuracy']} | {r['accuracy_ci95'][0]}–{r['accuracy_ci95'][1]} | {r['mean_tokens']} | "
                  f"{r['mean_samples']} | "
                  f"{r['p50_latency_s'] if r['p50_latency_s'] is not None else '—'} |"
                  for n, r in res.items() if not n.startswith(REPLAYED)]
        sc16, ad = res["SC@16"], res["adaptive SC (<=16)"]
        lines += stopping_table(res, sc16)
        bon, weighted, sc8 = res["BoN@8 reward_model"], res["weighted@8 reward_model"], res["SC@8"]
        lines += ["", f"Adaptive SC vs SC@16: accuracy {ad['accuracy']} vs {sc16['accuracy']} "
                  f"({(ad['accuracy'] - sc16['accuracy']) * 100:+.1f} pt), samples {ad['mean_samples']} vs 16 "
                  f"({16 / max(ad['mean_samples'], 1e-9):.1f}x fewer); target within 0.5 pt using >= 3x fewer: "
                  f"{'met' if adaptive_met(sc16, ad) else 'NOT met'}. Paired: the adaptive run drew exactly the "
                  f"pool's first samples on {run['paired']}/{run['questions']} questions.",
                  *oracle_lines(res),
                  f"BoN@8 reward model vs SC@8: {bon['accuracy']} vs {sc8['accuracy']}: "
                  f"{'met' if bon['accuracy'] > sc8['accuracy'] else 'NOT met'}. With reward-weighted votes (the "
                  f"`best_of_n_rm` level's selection): {weighted['accuracy']} vs {sc8['accuracy']}: "
                  f"{'met' if weighted['accuracy'] > sc8['accuracy'] else 'NOT met'}.", ""]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
