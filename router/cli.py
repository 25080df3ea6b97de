"""`router` command line: build and inspect models, and generate from one.

`serve`, `ask`, `eval`, `tune` and `ab` arrive with the service, policy and evaluation issues.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from router.config import Settings
from router.errors import RouterError


def _models(args: argparse.Namespace, settings: Settings) -> int:
    from router.engine.manifest import load_manifest
    from router.modelbuild.catalog import CATALOG, DEFAULT_MODEL

    if args.models_cmd == "build":
        from router.modelbuild.build import main as build_main

        argv = [args.name or settings.model, "--models-dir", str(settings.models_dir)]
        return build_main(argv + (["--force"] if args.force else []))
    for name, spec in CATALOG.items():
        model_dir = settings.model_dir(name)
        try:
            manifest = load_manifest(model_dir)
            status = f"built ({manifest.dtype}, {len(manifest.files)} files verified)"
        except RouterError as exc:
            status = f"not usable: {exc}"
        mark = "*" if name == DEFAULT_MODEL else " "
        print(f"{mark} {name:32s} {spec.dtype:5s} {status}")
    return 0


def _generate(args: argparse.Namespace, settings: Settings) -> int:
    from router.engine import Engine, SamplingParams

    load_start = time.perf_counter()
    engine = Engine.load(settings.model_dir(args.model), settings.engine.session(), settings.engine.max_samples)
    load_s = time.perf_counter() - load_start
    params = SamplingParams(
        temperature=args.temperature,
        top_p=args.top_p,
        top_k=args.top_k,
        max_new_tokens=args.max_new_tokens,
        seed=args.seed,
        stop=tuple(args.stop or ()),
    )
    start = time.perf_counter()
    completions = engine.generate(args.prompt, params, n=args.n)
    elapsed = time.perf_counter() - start
    tokens = sum(c.completion_tokens for c in completions)
    if args.json:
        print(json.dumps({
            "model": engine.name,
            "providers": engine.providers,
            "completions": [
                {"text": c.text, "tokens": c.completion_tokens, "finish_reason": c.finish_reason.value,
                 "mean_logprob": round(c.mean_logprob, 4)}
                for c in completions
            ],
            "seconds": round(elapsed, 3),
            "tokens_per_second": round(tokens / elapsed, 1),
        }, indent=2))
        return 0
    print(f"model {engine.name} on {engine.providers[0]} (loaded and verified in {load_s:.1f} s)")
    print(f"Q: {args.prompt}")
    for c in completions:
        tag = f"[{c.index}] " if len(completions) > 1 else ""
        print(f"A: {tag}{c.text.strip()}")
        print(f"   {c.completion_tokens} tokens, finish={c.finish_reason.value}, "
              f"mean logprob {c.mean_logprob:.3f}, prompt {c.prompt_tokens} tokens")
    print(f"{tokens} tokens in {elapsed:.2f} s = {tokens / elapsed:.1f} tokens/s "
          f"({args.n} sample{'s' if args.n > 1 else ''} from one prefill)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="router", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)

    models = sub.add_parser("models", help="build, list and verify models")
    msub = models.add_subparsers(dest="models_cmd", required=True)
    build = msub.add_parser("build", help="build a model into models/NAME (idempotent)")
    build.add_argument("name", nargs="?", help="model name (default: the configured model)")
    build.add_argument("--force", action="store_true", help="rebuild even when intact")
    msub.add_parser("list", help="known models and whether they are built and intact")

    gen = sub.add_parser("generate", help="generate from the model directly (no service)")
    gen.add_argument("prompt")
    gen.add_argument("--model", default=None)
    gen.add_argument("-n", type=int, default=1, help="samples from one prefill")
    gen.add_argument("--temperature", type=float, default=0.0)
    gen.add_argument("--top-p", type=float, default=1.0)
    gen.add_argument("--top-k", type=int, default=0)
    gen.add_argument("--max-new-tokens", type=int, default=96)
    gen.add_argument("--seed", type=int, default=None)
    gen.add_argument("--stop", action="append", help="stop string (repeatable)")
    gen.add_argument("--json", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = Settings()
    try:
        if args.cmd == "models":
            return _models(args, settings)
        return _generate(args, settings)
    except RouterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
