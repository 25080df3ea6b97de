"""Benchmark the ONNX Runtime engine against its peers, and fp32 against int8 and q4, on this machine.

What is compared, and why:

1. Greedy batch-1 generation (tokens/s): transformers ``generate`` on torch CPU (the reference the
   model was converted from) vs the engine with the fp32, the int8 and the q4 ONNX decoder (q4:
   the GGUF's own 4-bit blocks, the same weights as fp32), fp32 with its one-row decode steps on
   q4 (``engine.single_row_model``), fp32 with the concat KV cache (on the CPU provider the engine
   runs the default build's in-place cache, GroupQueryAttention into a preallocated buffer; the
   concat graph is what it serves on other providers), and llama.cpp
   on the same GGUF when ``llama_cpp`` is
   importable. All peers get the same token ids and the same thread count. Batch-1 decode is
   memory-bound: every weight is read once per token, so this measures how little each runtime
   adds on top of that read. The sections run minutes apart and batch-1 speed drifts here by more
   than 10 % in that time, so a last section (``paired``) also runs transformers and the engine
   fp32 in one process, taking turns in ABBA order; the greedy target is judged on its median
   per-pair ratio.
2. ``n=8`` samples from one prefill (``Engine.generate(..., n=8)``) vs eight sequential ``n=1``
   runs. Batched rows share each weight read, so eight samples should cost far less than eight
   times one; this is what makes best-of-n and voting affordable.
3. Prefill tokens/s (one forward pass over the prompt) for a short and a ~300-token prompt; this
   part is compute-bound, unlike decode.
4. fp32 vs int8 vs q4 accuracy on a fixed, generated arithmetic set (greedy), plus how often each
   variant's greedy tokens differ from fp32's: int8 re-quantizes weights that the GGUF already
   stored in 4 bits, so speed is bought with a second rounding error; q4 keeps those 4-bit
   blocks, so it should differ only by floating-point summation order.
5. Peak RSS per peer: each peer runs in a fresh subprocess of this script (``--section``), so one
   peer's memory never inflates another's.

``--device cuda`` runs sections 1-5 on a GPU machine with onnxruntime-gpu: transformers on torch
CUDA against the engine's fp32 decoder on the CUDA execution provider (the int8 and q4 variants and
llama.cpp are CPU peers and are left out), written to ``engine_cuda.json`` / ``engine_cuda.md`` so
the CPU report stays as it is. Memory there is host RSS; transformers' GPU peak is added.

Every cell is the median of ``--repeats`` runs (default 3). Results go to ``engine.json`` (raw
numbers, machine facts) and ``engine.md`` (tables, ratios, targets) in ``--out-dir``.

    python bench/engine.py                   # full run (builds the int8 and q4 models if missing)
    python bench/engine.py --quick --skip-int8 --out-dir /tmp/bench_smoke   # smoke run
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import importlib.metadata
import importlib.util
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from bench import machine  # noqa: E402
from router.engine.manifest import read_manifest  # noqa: E402
from router.engine.tokenizer import ChatTokenizer  # noqa: E402
from router.modelbuild.catalog import SMOLLM2, SMOLLM2_INT8, SMOLLM2_Q4, spec  # noqa: E402

TARGET_DECODE_RATIO = 3.0  # engine fp32 greedy tokens/s over transformers'
TARGET_SAMPLING_RATIO = 5.0  # n=8 from one prefill over 8 sequential runs
SAMPLES = 8
SAMPLING_TEMPERATURE = 0.7
ACCURACY_MAX_TOKENS = 64

# Prompts that make the model write at length, so greedy runs reach the token budget.
GREEDY_PROMPTS = (
    "Write a short story about a lighthouse keeper.",
    "Write a short story about a robot who learns to paint.",
    "Write a short story about two friends crossing a desert.",
)
SAMPLING_PROMPT = "Write a long story about a dragon who is afraid of the dark and the village that helps it."
LONG_PROMPT_TOKENS = 300
LONG_PROMPT_SENTENCES = (
    "The river town woke before dawn, when the bakers lit their ovens and the ferry bell rang twice.",
    "Merchants rolled barrels of salted fish along the quay while gulls argued over the scraps.",
    "In the square, the clock tower had been stuck at seven minutes past four for eleven years.",
    "Nobody remembered who had last climbed its stairs, though everyone claimed to know the reason.",
    "Children dared each other to touch the iron door, then ran laughing when a pigeon burst out.",
    "The mayor promised every spring that the clock would be repaired before the harvest fair.",
)

SECTIONS = ("hf", "fp32", "int8", "q4", "fp32+q4", "fp32-concat", "llama-cpp", "paired")
PAIRED_REPEATS = 8  # (transformers, engine) greedy pairs in section "paired"; even, for ABBA
PAIRED_PAUSE_S = 0.5
ENGINE_MODELS = {"fp32": SMOLLM2, "int8": SMOLLM2_INT8, "q4": SMOLLM2_Q4, "fp32+q4": SMOLLM2,
                 "fp32-concat": SMOLLM2}
SINGLE_ROW_MODELS = {"fp32+q4": SMOLLM2_Q4}  # engine.single_row_model of that variant
KV_CACHE = {"fp32-concat": "concat"}  # engine.kv_cache of that variant; the others "auto"
VARIANTS = ("int8", "q4", "fp32+q4", "fp32-concat")  # measured against fp32


@dataclass(frozen=True)
class Config:
    """Options every section needs; passed verbatim to the section subprocesses."""

    repeats: int
    tokens: int
    questions: int
    threads: int
    models_dir: Path
    device: str = "cpu"

    def argv(self) -> list[str]:
        return [
            "--device", self.device,
            "--repeats", str(self.repeats),
            "--tokens", str(self.tokens),
            "--questions", str(self.questions),
            "--threads", str(self.threads),
            "--models-dir", str(self.models_dir),
        ]


@dataclass(frozen=True)
class BenchPrompt:
    text: str
    ids: list[int]


# -- inputs ------------------------------------------------------------------------------------
def reference_tokenizer(config: Config) -> ChatTokenizer:
    """The engine's tokenizer and chat template, loaded without opening an ONNX session."""
    model_dir = config.models_dir / SMOLLM2
    manifest = read_manifest(model_dir)
    return ChatTokenizer(model_dir / manifest.tokenizer_file, manifest.chat_template)


def greedy_prompts(tok: ChatTokenizer) -> list[BenchPrompt]:
    return [BenchPrompt(p, tok.encode_prompt(p)) for p in GREEDY_PROMPTS]


def long_prompt(tok: ChatTokenizer, target: int = LONG_PROMPT_TOKENS) -> BenchPrompt:
    """A deterministic text whose templated encoding has at least ``target`` tokens."""
    sentences: list[str] = []
    i = 0
    while True:
        text = " ".join(sentences) + "\n\nSummarise the text above in two sentences."
        ids = tok.encode_prompt(text)
        if len(ids) >= target:
            return BenchPrompt(text, ids)
        sentences.append(LONG_PROMPT_SENTENCES[i % len(LONG_PROMPT_SENTENCES)])
        i += 1


@dataclass(frozen=True)
class Question:
    text: str
    answer: int


def arithmetic_questions(count: int, seed: int = 0) -> list[Question]:
    """Additions, subtractions and multiplications of 1-2 digit numbers, fixed by ``seed``."""
    rng = random.Random(seed)
    ops: dict[str, Callable[[int, int], int]] = {"+": int.__add__, "-": int.__sub__, "*": int.__mul__}
    out = []
    for _ in range(count):
        op = rng.choice(sorted(ops))
        a, b = rng.randint(1, 99), rng.randint(1, 99)
        out.append(Question(f"What is {a} {op} {b}? Answer with the number only.", ops[op](a, b)))
    return out


# An integer, optionally with thousands separators; a trailing ".digits" makes it a decimal.
_NUMBER = re.compile(r"(?<![\w.])(?<!\d,)-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?!\d|,\d)")


def parse_last_integer(text: str) -> int | None:
    """The last number in ``text`` if it is an integer (``68``, ``-5``, ``1,234``, ``68.0``), else None."""
    found = _NUMBER.findall(text)
    if not found:
        return None
    last = found[-1].replace(",", "")
    whole, _, frac = last.partition(".")
    if frac and set(frac) != {"0"}:
        return None
    return int(whole)


# -- measurement helpers -----------------------------------------------------------------------
def current_rss_mb() -> float | None:
    try:
        import psutil
    except ImportError:
        return None
    return round(psutil.Process().memory_info().rss / 2**20, 1)


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def load_paired_engines(names: Sequence[str], threads: int, configure: Callable[[Any, str], None]) -> tuple[
        dict[str, Any], dict[str, float]]:
    """The default build opened once per name, in order, on the CPU provider with ``threads``
    intra-op threads (``configure(settings, name)`` sets what differs), and the RSS each load added
    in MB: the engines of a paired bench (``kv_layout.py``, ``greedy_head.py``)."""
    import psutil

    from router.config import Settings

    settings = Settings()
    settings.engine.providers = ["CPUExecutionProvider"]
    settings.engine.intra_op_threads = threads
    process = psutil.Process()
    engines: dict[str, Any] = {}
    load_rss: dict[str, float] = {}
    for name in names:
        before = process.memory_info().rss
        configure(settings, name)
        engines[name] = settings.load_engine(settings.model_dir(SMOLLM2))
        load_rss[name] = round((process.memory_info().rss - before) / 2**20, 1)
    return engines, load_rss


def rate(tokens: int, seconds: float) -> float:
    return round(tokens / seconds, 2) if seconds > 0 else 0.0


def measure_greedy(
    run_one: Callable[[BenchPrompt], list[int]], prompts: Sequence[BenchPrompt], repeats: int
) -> dict[str, Any]:
    """Greedy generation over all prompts, ``repeats`` times; tokens/s = median over repeats of
    (tokens generated over all prompts / seconds over all prompts)."""
    run_one(prompts[0])  # warm-up: first-call allocations
    runs, per_repeat, token_ids = [], [], []
    for r in range(repeats):
        total_tokens, total_seconds = 0, 0.0
        token_ids = []
        for p, prompt in enumerate(prompts):
            ids, seconds = timed(lambda prompt=prompt: run_one(prompt))
            runs.append({"prompt": p, "repeat": r, "prompt_tokens": len(prompt.ids),
                         "tokens": len(ids), "seconds": round(seconds, 4)})
            token_ids.append(ids)
            total_tokens += len(ids)
            total_seconds += seconds
        per_repeat.append(rate(total_tokens, total_seconds))
    return {"tokens_per_s": statistics.median(per_repeat), "per_repeat": per_repeat, "runs": runs,
            "token_ids": token_ids}


# -- sections (each runs in its own subprocess) ------------------------------------------------
def hf_greedy_runner(config: Config) -> tuple[Callable[[BenchPrompt], list[int]], float]:
    """transformers' greedy ``generate`` on the GGUF (torch, ``config.threads`` threads), and its load seconds."""
    os.environ.setdefault("TQDM_DISABLE", "1")  # transformers' GGUF conversion progress bars
    import torch
    from transformers import AutoModelForCausalLM

    from router.modelbuild.build import locate_source

    torch.set_num_threads(config.threads)
    gguf = locate_source(spec(SMOLLM2))
    model, load_s = timed(lambda: AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32).eval().to(config.device))
    eos = read_manifest(config.models_dir / SMOLLM2).eos_token_ids[0]

    def run_one(prompt: BenchPrompt) -> list[int]:
        ids = torch.tensor([prompt.ids], device=config.device)
        with torch.no_grad():
            out = model.generate(
                ids, attention_mask=torch.ones_like(ids), do_sample=False, pad_token_id=eos,
                min_new_tokens=config.tokens, max_new_tokens=config.tokens,
            )
        return out[0, len(prompt.ids):].tolist()

    return run_one, load_s


def section_hf(config: Config) -> dict[str, Any]:
    import torch

    run_one, load_s = hf_greedy_runner(config)
    rss_loaded = current_rss_mb()
    greedy = measure_greedy(run_one, greedy_prompts(reference_tokenizer(config)), config.repeats)
    result = {"load_seconds": round(load_s, 2), "rss_after_load_mb": rss_loaded, "greedy": greedy,
              "threads": torch.get_num_threads()}
    if config.device == "cuda":
        result["gpu_peak_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return result


def section_paired(config: Config) -> dict[str, Any]:
    """Greedy batch 1, transformers against the engine fp32 as served, in one process taking turns.

    The separate sections run minutes apart, and this machine's batch-1 speed drifts by more than
    10 % over that time (README, "What moves is the machine"), so their ratio says as much about
    the drift as about the runtimes. Here each repeat runs the three prompts on both, in ABBA
    order, after a pause that lets the other runtime's worker threads stop spinning; the report
    is the median of the per-pair ratios.
    """
    from router.engine import Engine, SamplingParams
    from router.engine.session import CPU, SessionSettings

    hf_run, _ = hf_greedy_runner(config)
    settings = SessionSettings(providers=(CPU,), intra_op_threads=config.threads)
    engine = Engine.load(config.models_dir / SMOLLM2, settings)
    params = SamplingParams(max_new_tokens=config.tokens)
    runners = {"hf": hf_run, "engine": lambda p: engine.generate(p.text, params)[0].token_ids}
    prompts = greedy_prompts(engine.tokenizer)
    for run_one in runners.values():
        run_one(prompts[0])  # warm-up
    rates: dict[str, list[float]] = {name: [] for name in runners}
    pairs = PAIRED_REPEATS if config.repeats >= 3 else 2  # 2 in a --quick smoke run
    for r in range(pairs):
        for name in (("hf", "engine") if r % 2 == 0 else ("engine", "hf")):
            time.sleep(PAIRED_PAUSE_S)
            tokens, seconds = 0, 0.0
            for prompt in prompts:
                ids, took = timed(lambda prompt=prompt, run_one=runners[name]: run_one(prompt))
                tokens, seconds = tokens + len(ids), seconds + took
            rates[name].append(rate(tokens, seconds))
    ratios = [round(e / h, 3) for e, h in zip(rates["engine"], rates["hf"], strict=True)]
    return {"kv_cache": engine.kv_cache, "pairs": pairs, "pause_s": PAIRED_PAUSE_S,
            "hf_tokens_per_s": rates["hf"], "engine_tokens_per_s": rates["engine"], "ratios": ratios,
            "ratio_median": round(statistics.median(ratios), 3),
            "pairs_at_target": sum(x >= TARGET_DECODE_RATIO for x in ratios)}


def section_llama_cpp(config: Config) -> dict[str, Any]:
    try:
        from llama_cpp import Llama
    except ImportError:
        return {"status": "not installed"}
    from router.modelbuild.build import locate_source

    tok = reference_tokenizer(config)
    gguf = locate_source(spec(SMOLLM2))
    llm, load_s = timed(lambda: Llama(model_path=str(gguf), n_threads=config.threads, n_ctx=512, verbose=False))
    rss_loaded = current_rss_mb()

    def run_one(prompt: BenchPrompt) -> list[int]:
        # Token ids rather than the rendered text, so llama.cpp cannot add a second BOS.
        tokens: list[int] = []
        for token in llm.generate(prompt.ids, temp=0.0, repeat_penalty=1.0, reset=True):
            if token == llm.token_eos():
                break
            tokens.append(int(token))
            if len(tokens) >= config.tokens:
                break
        return tokens

    greedy = measure_greedy(run_one, greedy_prompts(tok), config.repeats)
    return {"status": "ok", "version": importlib.metadata.version("llama-cpp-python"),
            "load_seconds": round(load_s, 2), "rss_after_load_mb": rss_loaded, "greedy": greedy}


def section_engine(config: Config, variant: str) -> dict[str, Any]:
    from router.engine import Engine
    from router.engine.session import CPU, CUDA, SessionSettings

    if config.device == "cuda":  # no silent CPU fallback: a CPU run would be reported as CUDA
        settings = SessionSettings(providers=(CUDA,), allow_cpu_fallback=False, intra_op_threads=config.threads)
    else:
        settings = SessionSettings(providers=(CPU,), intra_op_threads=config.threads)
    single_row = SINGLE_ROW_MODELS.get(variant)
    engine, load_s = timed(lambda: Engine.load(config.models_dir / ENGINE_MODELS[variant], settings,
                                               single_row_dir=config.models_dir / single_row if single_row else None,
                                               kv_cache=KV_CACHE.get(variant, "auto")))
    rss_loaded = current_rss_mb()
    prompts = greedy_prompts(engine.tokenizer)
    return {
        "model": engine.name,
        "kv_cache": engine.kv_cache,
        "load_seconds": round(load_s, 2),
        "rss_after_load_mb": rss_loaded,
        "greedy": engine_greedy(engine, prompts, config),
        "prefill": engine_prefill(engine, [prompts[0], long_prompt(engine.tokenizer)], config.repeats),
        "sampling": engine_sampling(engine, config),
        "accuracy": engine_accuracy(engine, arithmetic_questions(config.questions)),
    }


def engine_greedy(engine: Any, prompts: list[BenchPrompt], config: Config) -> dict[str, Any]:
    from router.engine import SamplingParams

    params = SamplingParams(max_new_tokens=config.tokens)
    return measure_greedy(lambda p: engine.generate(p.text, params)[0].token_ids, prompts, config.repeats)


def engine_prefill(engine: Any, prompts: list[BenchPrompt], repeats: int) -> list[dict[str, Any]]:
    """Seconds for one forward pass over each prompt; tokens/s = prompt tokens / median seconds."""
    out = []
    for prompt in prompts:
        engine.prefill(prompt.ids)  # warm-up for this sequence length
        seconds = [timed(lambda prompt=prompt: engine.prefill(prompt.ids))[1] for _ in range(repeats)]
        median = statistics.median(seconds)
        out.append({"prompt_tokens": len(prompt.ids), "seconds": [round(s, 4) for s in seconds],
                    "median_seconds": round(median, 4), "tokens_per_s": rate(len(prompt.ids), median)})
    return out


def engine_sampling(engine: Any, config: Config) -> dict[str, Any]:
    """``n=8`` from one prefill vs eight sequential ``n=1`` runs; only generated tokens count."""
    from router.engine import FinishReason, SamplingParams

    def params(seed: int) -> SamplingParams:
        return SamplingParams(temperature=SAMPLING_TEMPERATURE, max_new_tokens=config.tokens, seed=seed)

    def batched(r: int) -> list[Any]:
        return engine.generate(SAMPLING_PROMPT, params(1000 + r), n=SAMPLES)

    def sequential(r: int) -> list[Any]:
        return [engine.generate(SAMPLING_PROMPT, params(2000 + SAMPLES * r + i))[0] for i in range(SAMPLES)]

    engine.generate(SAMPLING_PROMPT, params(0), n=SAMPLES)  # warm-up: batch-shaped allocations
    result: dict[str, Any] = {"samples": SAMPLES, "temperature": SAMPLING_TEMPERATURE, "order": "ABBA"}
    runs: dict[str, list[dict[str, Any]]] = {"batched": [], "sequential": []}
    # The two peers alternate, repeat by repeat (ABBA): batch-1 decoding follows this machine's memory
    # bandwidth, which drifts over tens of seconds (bench/results/hugepages.md), and blocks of one peer
    # then the other would put the drift into the ratio.
    for r in range(config.repeats):
        order = (("batched", batched), ("sequential", sequential))
        for name, fn in order if r % 2 == 0 else order[::-1]:
            comps, seconds = timed(lambda fn=fn, r=r: fn(r))
            tokens = sum(c.completion_tokens for c in comps)
            early = sum(1 for c in comps if c.finish_reason != FinishReason.LENGTH)
            runs[name].append({"tokens": tokens, "seconds": round(seconds, 4), "stopped_early": early,
                               "tokens_per_s": rate(tokens, seconds)})
    for name, done in runs.items():
        result[name] = {"tokens_per_s": statistics.median(run["tokens_per_s"] for run in done), "runs": done}
    result["ratio"] = round(result["batched"]["tokens_per_s"] / result["sequential"]["tokens_per_s"], 2)
    return result


def engine_accuracy(engine: Any, questions: list[Question]) -> dict[str, Any]:
    from router.engine import SamplingParams

    params = SamplingParams(max_new_tokens=ACCURACY_MAX_TOKENS)
    items = []
    for q in questions:
        comp = engine.generate(q.text, params)[0]
        got = parse_last_integer(comp.text)
        items.append({"question": q.text, "expected": q.answer, "text": comp.text, "parsed": got,
                      "correct": got == q.answer, "token_ids": comp.token_ids})
    correct = sum(i["correct"] for i in items)
    return {"questions": len(items), "correct": correct, "accuracy": round(correct / len(items), 4),
            "items": items}


def run_section(name: str, config: Config) -> dict[str, Any]:
    if name == "hf":
        result = section_hf(config)
    elif name == "llama-cpp":
        result = section_llama_cpp(config)
    elif name == "paired":
        result = section_paired(config)
    else:
        result = section_engine(config, name)
    result["peak_rss_mb"] = round(machine.peak_rss_mb(), 1)
    return result


def spawn_section(name: str, config: Config) -> dict[str, Any]:
    """Run one section in a fresh interpreter, so its peak RSS is its own."""
    with tempfile.TemporaryDirectory(prefix="bench-engine-") as tmp:
        out = Path(tmp) / f"{name}.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--section", name, "--json-out", str(out),
               *config.argv()]
        started = time.perf_counter()
        proc = subprocess.run(cmd, cwd=REPO_ROOT, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"section {name!r} failed with exit code {proc.returncode}: {' '.join(cmd)}")
        result = json.loads(out.read_text())
    result["section_seconds"] = round(time.perf_counter() - started, 1)
    return result


def machine_info(device: str = "cpu") -> dict[str, Any]:
    info = machine.machine_info(("onnxruntime", "onnxruntime-gpu", "torch", "transformers", "numpy",
                                 "llama-cpp-python"))
    if device == "cuda":
        query = ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"]
        info["gpu"] = subprocess.run(query, capture_output=True, text=True, check=False).stdout.strip()
    return info


# -- driver ------------------------------------------------------------------------------------
def ensure_built(models_dir: Path, variant: str) -> None:
    from router.modelbuild.build import build

    build(ENGINE_MODELS[variant], models_dir)
    if variant in SINGLE_ROW_MODELS:
        build(SINGLE_ROW_MODELS[variant], models_dir)


def compare_outputs(results: dict[str, Any]) -> dict[str, Any]:
    """Cross-section facts: greedy parity of the engine with transformers, each variant's tokens vs fp32's."""
    out: dict[str, Any] = {}
    hf, fp32 = results.get("hf"), results.get("fp32")
    if hf and fp32:
        pairs = zip(fp32["greedy"]["token_ids"], hf["greedy"]["token_ids"], strict=True)
        # The engine may stop at EOS; transformers was forced to run the full budget.
        out["fp32_greedy_matches_hf"] = [e == h[: len(e)] for e, h in pairs]
    for variant in VARIANTS:
        other = results.get(variant)
        if not (fp32 and other and "accuracy" in other):
            continue
        a, b = fp32["accuracy"]["items"], other["accuracy"]["items"]
        pairs = [(x["token_ids"], y["token_ids"]) for x, y in zip(a, b, strict=True)]
        differ = [x != y for x, y in pairs]
        out[f"{variant}_tokens_differ_fraction"] = round(sum(differ) / len(differ), 4)
        out[f"{variant}_tokens_differ_count"] = sum(differ)
        out[f"{variant}_first_divergence"] = [_first_divergence(x, y) for x, y in pairs]
    return out


def _first_divergence(a: list[int], b: list[int]) -> int | None:
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def run_all(config: Config, args: argparse.Namespace) -> dict[str, Any]:
    sections = ["fp32"]
    for variant in VARIANTS:
        if (variant == "int8" and args.skip_int8) or config.device == "cuda":
            continue
        ensure_built(config.models_dir, variant)
        sections.append(variant)
    if not args.skip_hf:
        sections.insert(0, "hf")
    results: dict[str, Any] = {}
    for name in sections:
        print(f"[bench] section {name} ...", flush=True)
        results[name] = spawn_section(name, config)
    if config.device == "cuda":
        results["llama-cpp"] = {"status": "CPU peer, not run with --device cuda"}
    elif importlib.util.find_spec("llama_cpp") is not None:
        print("[bench] section llama-cpp ...", flush=True)
        results["llama-cpp"] = spawn_section("llama-cpp", config)
    else:
        results["llama-cpp"] = {"status": "not installed"}
    if not args.skip_hf and config.device == "cpu":
        print("[bench] section paired ...", flush=True)
        results["paired"] = spawn_section("paired", config)
    return results


def build_report(config: Config, args: argparse.Namespace) -> dict[str, Any]:
    machine = machine_info(config.device)
    started = dt.datetime.now(dt.UTC)
    results = run_all(config, args)
    machine["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    return {
        "date_utc": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": machine,
        "config": {**{k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(config).items()},
                   "quick": args.quick, "skip_int8": args.skip_int8, "skip_hf": args.skip_hf},
        "device": config.device,
        "targets": {"decode_ratio_vs_hf": TARGET_DECODE_RATIO, "sampling_ratio": TARGET_SAMPLING_RATIO},
        "results": results,
        "comparisons": compare_outputs(results),
    }


# -- markdown ----------------------------------------------------------------------------------
def _met(value: float | None, target: float) -> str:
    if value is None:
        return "n/a"
    return "met" if value >= target else "NOT met"


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join("" if c is None else str(c) for c in row) + " |" for row in rows]
    return lines


def render_markdown(report: dict[str, Any]) -> str:
    m, cfg, res = report["machine"], report["config"], report["results"]
    cuda = report.get("device") == "cuda"
    ort_version = m["versions"].get("onnxruntime-gpu") if cuda else m["versions"]["onnxruntime"]
    lines = [
        "# Engine benchmark" + (" on CUDA" if cuda else ""),
        "",
        *([f"GPU: {m['gpu']}. Every peer runs on it: transformers on torch CUDA, the engine on ONNX "
           "Runtime's CUDA execution provider with CPU fallback refused.", ""] if cuda else []),
        f"{report['date_utc']} · {m['cpu']} · {m['logical_cores']} logical / {m['physical_cores']} physical "
        f"cores · {m['ram_gb']} GB RAM · Python {m['python']} · onnxruntime {ort_version} · "
        f"torch {m['versions']['torch']} · transformers {m['versions']['transformers']} · commit "
        f"{(m['git_commit'] or 'unknown')[:12]}",
        "",
        f"Settings: {cfg['threads']} threads for every peer, median of {cfg['repeats']} runs per cell, "
        f"{cfg['tokens']} new tokens, {cfg['questions']} accuracy questions"
        + (" (**--quick smoke run: not a measurement**)" if cfg["quick"] else "")
        + f". Load average {m['load_average_at_start']} at start, {m['load_average_at_end']} at end.",
        "",
    ]
    lines += _greedy_md(report) + _sampling_md(res) + _prefill_md(res) + _accuracy_md(report) + _memory_md(res)
    return "\n".join(lines) + "\n"


def _greedy_md(report: dict[str, Any]) -> list[str]:
    res = report["results"]
    hf_rate = res["hf"]["greedy"]["tokens_per_s"] if "hf" in res else None
    rows = []
    hf_label = "transformers (torch CUDA)" if report.get("device") == "cuda" else "transformers (torch CPU)"
    for name, label in (("hf", hf_label), ("fp32", "engine fp32"), ("int8", "engine int8"),
                        ("q4", "engine q4 (GGUF blocks)"), ("fp32+q4", "engine fp32, single-row steps on q4"),
                        ("fp32-concat", "engine fp32, concat KV cache"),
                        ("llama-cpp", "llama.cpp (GGUF Q4_1)")):
        r = res.get(name)
        if r is None or "greedy" not in r:
            rows.append([label, r.get("status", "skipped") if r else "skipped", "", ""])
            continue
        g = r["greedy"]
        tokens = sum(x["tokens"] for x in g["runs"]) // max(1, len(g["per_repeat"]))
        ratio = round(g["tokens_per_s"] / hf_rate, 2) if hf_rate and name != "hf" else None
        rows.append([label, g["tokens_per_s"], tokens, f"{ratio}x" if ratio is not None else ""])
    fp32_ratio = (res["fp32"]["greedy"]["tokens_per_s"] / hf_rate) if hf_rate else None
    lines = ["## 1. Greedy batch-1 generation (prefill + decode, 3 prompts)", ""]
    lines += _table(["peer", "tokens/s", "tokens per repeat", "vs transformers"], rows)
    verdict = _met(fp32_ratio, TARGET_DECODE_RATIO) + (f" ({fp32_ratio:.2f}x)" if fp32_ratio else "")
    paired = res.get("paired")
    if paired and "ratio_median" in paired:
        x = paired["ratio_median"]
        lines += ["", f"Paired in one process (section `paired`, the engine fp32 as served: {paired['kv_cache']} KV "
                  f"cache): {paired['pairs']} pairs of the three prompts on both, ABBA order, {paired['pause_s']} s "
                  f"pause before each turn. Engine / transformers per pair: "
                  f"{', '.join(f'{r}x' for r in paired['ratios'])}; {paired['pairs_at_target']}/{paired['pairs']} "
                  f"at >= {TARGET_DECODE_RATIO}x.", "",
                  f"Target engine fp32 >= {TARGET_DECODE_RATIO}x transformers, on the paired median: "
                  f"**{_met(x, TARGET_DECODE_RATIO)}** ({x:.2f}x); on the separate sections above, run minutes "
                  f"apart: {verdict}."]
    else:
        lines += ["", f"Target engine fp32 >= {TARGET_DECODE_RATIO}x transformers: **{verdict}**."]
    parity = report["comparisons"].get("fp32_greedy_matches_hf")
    if parity is not None:
        lines.append(f"Engine fp32 greedy tokens equal transformers' on {sum(parity)}/{len(parity)} prompts.")
    return lines + [""]


def _sampling_md(res: dict[str, Any]) -> list[str]:
    rows = []
    for name in ("fp32", *VARIANTS):
        if name not in res:
            continue
        s = res[name]["sampling"]
        early = sum(r["stopped_early"] for r in s["batched"]["runs"] + s["sequential"]["runs"])
        rows.append([f"engine {name}", s["batched"]["tokens_per_s"], s["sequential"]["tokens_per_s"],
                     f"{s['ratio']}x", _met(s["ratio"], TARGET_SAMPLING_RATIO), early])
    lines = [f"## 2. {SAMPLES} samples (T={SAMPLING_TEMPERATURE}) from one prefill vs {SAMPLES} sequential runs", ""]
    lines += _table(["model", f"n={SAMPLES} tokens/s", "sequential tokens/s", "ratio",
                     f"target >= {TARGET_SAMPLING_RATIO}x", "samples stopped early"], rows)
    layouts = ", ".join(f"{n} {res[n]['kv_cache']}" for n in ("fp32", *VARIANTS) if "kv_cache" in res.get(n, {}))
    return lines + ["", "Only generated tokens count; samples that hit EOS early contribute what they made. The two "
                    "peers alternate repeat by repeat (n=8 then sequential, then sequential then n=8, ...), so drift "
                    "of the machine during a section lands on both.", "",
                    f"KV cache layout each engine ran (fp32 is the default build as served, `engine.kv_cache` auto): "
                    f"{layouts}.", ""]


def _prefill_md(res: dict[str, Any]) -> list[str]:
    engines = [n for n in ("fp32", *VARIANTS) if n in res]
    if not engines:
        return []
    rows = []
    for i, p in enumerate(res[engines[0]]["prefill"]):
        rows.append([p["prompt_tokens"], *(res[n]["prefill"][i]["tokens_per_s"] for n in engines),
                     *(round(res[n]["prefill"][i]["median_seconds"] * 1000, 1) for n in engines)])
    header = ["prompt tokens", *(f"{n} tokens/s" for n in engines), *(f"{n} ms" for n in engines)]
    return ["## 3. Prefill (one forward pass over the prompt)", "", *_table(header, rows), ""]


def _accuracy_md(report: dict[str, Any]) -> list[str]:
    res, comp = report["results"], report["comparisons"]
    rows = [[f"engine {n}", f"{res[n]['accuracy']['correct']}/{res[n]['accuracy']['questions']}",
             res[n]["accuracy"]["accuracy"]] for n in ("fp32", *VARIANTS) if n in res]
    lines = [f"## 4. Greedy arithmetic accuracy (random.Random(0), max {ACCURACY_MAX_TOKENS} tokens)", ""]
    lines += _table(["model", "correct", "accuracy"], rows)
    for v in VARIANTS:
        if f"{v}_tokens_differ_fraction" in comp:
            lines += ["", f"{v} greedy tokens differ from fp32's on {comp[f'{v}_tokens_differ_count']}/"
                      f"{len(comp[f'{v}_first_divergence'])} questions ({comp[f'{v}_tokens_differ_fraction']:.0%})."]
    return lines + [""]


def _memory_md(res: dict[str, Any]) -> list[str]:
    gpu = any("gpu_peak_mb" in r for r in res.values())
    rows = [[name if name != "paired" else "paired (transformers and engine fp32)", r.get("rss_after_load_mb"),
             r["peak_rss_mb"], r.get("load_seconds")]
            + ([r.get("gpu_peak_mb") or "not measured"] if gpu else [])
            for name, r in res.items() if "peak_rss_mb" in r]
    header = ["peer", "RSS after load MB", "peak RSS MB", "load s"] + (["GPU peak MB (torch allocator)"] if gpu else [])
    lines = ["## 5. Memory (each peer in its own process)", ""]
    lines += _table(header, rows)
    return lines + [""]


# -- CLI ---------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from router.modelbuild.build import default_models_dir

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out-dir", type=Path, default=REPO_ROOT / "bench" / "results",
                   help="where engine.json and engine.md go (default: bench/results)")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 1 repeat, 16 tokens, 8 questions (overrides those options)")
    p.add_argument("--skip-int8", action="store_true", help="do not build or measure the int8 model")
    p.add_argument("--skip-hf", action="store_true", help="do not measure transformers")
    p.add_argument("--repeats", type=int, default=3, help="runs per cell; the median is reported")
    p.add_argument("--tokens", type=int, default=64, help="new tokens per generation")
    p.add_argument("--questions", type=int, default=40, help="arithmetic questions for the accuracy check")
    p.add_argument("--threads", type=int, default=2, help="threads for every peer (torch, ORT, llama.cpp)")
    p.add_argument("--models-dir", type=Path, default=default_models_dir())
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="cuda: transformers and the fp32 engine on the GPU (see the module docstring)")
    p.add_argument("--section", choices=SECTIONS, help=argparse.SUPPRESS)
    p.add_argument("--json-out", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.repeats, args.tokens, args.questions = 1, 16, 8
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config = Config(args.repeats, args.tokens, args.questions, args.threads, args.models_dir.resolve(), args.device)
    if args.section:
        result = run_section(args.section, config)
        args.json_out.write_text(json.dumps(result))
        return 0
    report = build_report(config, args)
    stem = "engine_cuda" if args.device == "cuda" else "engine"
    machine.write_report(args.out_dir, stem, report, render_markdown(report))
    print(f"[bench] wrote {args.out_dir / f'{stem}.json'} and {args.out_dir / f'{stem}.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
