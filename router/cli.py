"""`router` command line: serve, ask, feedback, build and inspect models, generate without the service.

`eval`, `tune`, `difficulty` (labels, train), `store` (export), `policy` (check, reload) and `ab` (report)
hand their arguments to the module that owns them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

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
    from router.engine import SamplingParams

    if args.model is not None:
        from router.modelbuild.catalog import CATALOG

        if Path(args.model).name != args.model:
            print(f"error: --model takes a model name (a directory under {settings.models_dir}), got {args.model!r}",
                  file=sys.stderr)
            return 2
        if args.model not in CATALOG and not settings.model_dir(args.model).is_dir():
            print(f"error: no model '{args.model}' in {settings.models_dir}; this project builds "
                  f"{', '.join(CATALOG)}", file=sys.stderr)
            return 2
    load_start = time.perf_counter()
    engine = settings.load_engine(settings.model_dir(args.model))
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
            "kv_cache": engine.kv_cache,
            "int8_greedy_head": engine.int8_greedy_head,
            "completions": [
                {"text": c.text, "tokens": c.completion_tokens, "finish_reason": c.finish_reason.value,
                 "mean_logprob": round(c.mean_logprob, 4)}
                for c in completions
            ],
            "seconds": round(elapsed, 3),
            "tokens_per_second": round(tokens / elapsed, 1),
        }, indent=2))
        return 0
    head = ", int8 greedy head" if engine.int8_greedy_head else ""
    print(f"model {engine.name} on {engine.providers[0]}, {engine.kv_cache} KV cache{head} "
          f"(loaded and verified in {load_s:.1f} s)")
    print(f"Q: {args.prompt}")
    for c in completions:
        tag = f"[{c.index}] " if len(completions) > 1 else ""
        print(f"A: {tag}{c.text.strip()}")
        print(f"   {c.completion_tokens} tokens, finish={c.finish_reason.value}, "
              f"mean logprob {c.mean_logprob:.3f}, prompt {c.prompt_tokens} tokens")
    print(f"{tokens} tokens in {elapsed:.2f} s = {tokens / elapsed:.1f} tokens/s "
          f"({args.n} sample{'s' if args.n > 1 else ''} from one prefill)")
    return 0


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio
    import logging

    from router.server import serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.port is not None:
        settings.server.port = args.port
    return asyncio.run(serve(settings))


def _ask(args: argparse.Namespace, settings: Settings) -> int:
    import grpc
    from google.protobuf.json_format import MessageToDict

    from router.client import RouterClient, error_text

    target = args.target or f"{settings.server.host}:{settings.server.port}"
    with RouterClient(target, timeout_s=args.timeout) as client:
        try:
            r = client.generate(args.question, level=args.level, policy=args.policy, return_trace=args.trace,
                                unit_id=args.unit_id, deadline_ms=args.deadline_ms,
                                max_tokens=args.max_tokens, seed=args.seed, temperature=args.temperature)
        except grpc.RpcError as exc:
            print(f"error: {error_text(exc)}", file=sys.stderr)
            return 1
    if args.json:
        print(json.dumps(MessageToDict(r, preserving_proto_field_name=True), indent=2))
        return 0
    d = r.decision
    print(f"Q: {args.question}")
    print(f"A: {r.text.strip()}")
    print(f"   decision: level={d.level} strategy={d.strategy} samples={d.samples} policy={d.policy}@{d.policy_version}"
          f" ({d.reason})")
    if d.predicted_success:
        predicted = ", ".join(f"{k} {v:.2f}" for k, v in d.predicted_success.items())
        print(f"   difficulty {d.difficulty:.2f}; predicted success: {predicted}")
    if d.experiment:
        print(f"   experiment {d.experiment}: arm {d.arm}")
    print(f"   usage: {r.usage.prompt_tokens} prompt + {r.usage.completion_tokens} completion tokens, "
          f"{r.usage.samples} sample(s); {r.timings.total_ms:.0f} ms total "
          f"({r.timings.queue_ms:.1f} queue, {r.timings.generate_ms:.0f} generate); request {r.request_id}")
    flags = [name for name in ("degraded", "truncated_by_deadline", "truncated_by_budget") if getattr(r.flags, name)]
    if flags:
        print(f"   flags: {', '.join(flags)}")
    return 0


def _feedback(args: argparse.Namespace, settings: Settings) -> int:
    import grpc

    from router.client import RouterClient, error_text

    target = args.target or f"{settings.server.host}:{settings.server.port}"
    with RouterClient(target, timeout_s=args.timeout) as client:
        try:
            created = client.feedback(args.request_id, args.key, score=args.score, label=args.label,
                                      comment=args.comment)
        except grpc.RpcError as exc:
            print(f"error: {error_text(exc)}", file=sys.stderr)
            return 1
    print(f"feedback '{args.key}' on request {args.request_id}: "
          + ("stored" if created else "already stored before (kept the first)"))
    return 0


# sub-command -> "module:function", or {action: "module:function"}; each takes the remaining argv
DELEGATED: dict[str, str | dict[str, str]] = {
    "eval": "router.evaluation.eval_cli:main",
    "tune": "router.policy.tune_cli:main",
    "difficulty": {"labels": "router.difficulty.labels:main", "train": "router.difficulty.train:main"},
    "store": {"export": "router.store.export:main"},
    "policy": {"check": "router.policy.admin:check_main", "reload": "router.policy.admin:reload_main"},
    "ab": {"report": "router.evaluation.ab_cli:main"},
}


def _delegate(cmd: str, argv: list[str]) -> int:
    import importlib

    actions = DELEGATED[cmd]
    if isinstance(actions, str):
        target, rest = actions, argv
    elif argv and argv[0] in actions:
        target, rest = actions[argv[0]], argv[1:]
    else:
        asked = bool(argv) and argv[0] in ("-h", "--help")
        usage = f"usage: router {cmd} {{{','.join(actions)}}} [options]  (router {cmd} ACTION --help for its options)"
        if not asked:
            print(usage, file=sys.stderr)
            print(f"router {cmd}: " + (f"unknown action '{argv[0]}'" if argv else "an action is required"),
                  file=sys.stderr)
            return 2
        print(usage)
        return 0
    module, func = target.split(":")
    return getattr(importlib.import_module(module), func)(rest)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="router", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)

    models = sub.add_parser("models", help="build, list and verify models")
    msub = models.add_subparsers(dest="models_cmd", required=True)
    build = msub.add_parser("build", help="build a model into models/NAME (idempotent)")
    build.add_argument("name", nargs="?", help="model name (default: the configured model)")
    build.add_argument("--force", action="store_true", help="rebuild even when intact")
    msub.add_parser("list", help="known models and whether they are built and intact")

    serve = sub.add_parser("serve", help="run the gRPC service (config: ROUTER_CONFIG YAML + ROUTER_* env)")
    serve.add_argument("--port", type=int, default=None)

    ask = sub.add_parser("ask", help="ask a running service and print the answer and the decision")
    ask.add_argument("question")
    ask.add_argument("--target", default=None, help="host:port (default: the configured server address)")
    ask.add_argument("--level", default="")
    ask.add_argument("--policy", default="")
    ask.add_argument("--unit-id", default="", help="experiment unit (user or session id)")
    ask.add_argument("--deadline-ms", type=int, default=0)
    ask.add_argument("--max-tokens", type=int, default=0)
    ask.add_argument("--temperature", type=float, default=None)
    ask.add_argument("--seed", type=int, default=None)
    ask.add_argument("--timeout", type=float, default=60.0, help="deadline in seconds")
    ask.add_argument("--trace", action="store_true")
    ask.add_argument("--json", action="store_true")

    fb = sub.add_parser("feedback", help="attach a score or label to an answered request (SubmitFeedback)")
    fb.add_argument("request_id", help="the request id `router ask` printed")
    fb.add_argument("--key", default="correct", help="what is judged (default: correct)")
    fb.add_argument("--score", type=float, default=None, help="e.g. 1 for right, 0 for wrong")
    fb.add_argument("--label", default="")
    fb.add_argument("--comment", default="")
    fb.add_argument("--target", default=None, help="host:port (default: the configured server address)")
    fb.add_argument("--timeout", type=float, default=10.0, help="deadline in seconds")

    for cmd, actions in DELEGATED.items():
        what = {"eval": "run levels or a policy over a dataset", "tune": "tune a policy's threshold from eval results"
                }.get(cmd, ", ".join(actions))
        delegated = sub.add_parser(cmd, help=what, add_help=False)
        delegated.add_argument("rest", nargs=argparse.REMAINDER)

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
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in DELEGATED:  # before argparse, which would take the delegate's options
        try:
            return _delegate(argv[0], argv[1:])
        except RouterError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    args = build_parser().parse_args(argv)
    settings = Settings()
    try:
        if args.cmd == "models":
            return _models(args, settings)
        if args.cmd == "serve":
            return _serve(args, settings)
        if args.cmd == "ask":
            return _ask(args, settings)
        if args.cmd == "feedback":
            return _feedback(args, settings)
        return _generate(args, settings)
    except RouterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
