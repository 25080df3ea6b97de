"""`router policy check FILE` (validate offline) and `router policy reload` (ask a server to re-read)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from router.errors import PolicyFileError


def check_main(argv: list[str]) -> int:
    from router.config import Settings
    from router.policy.loader import load_policies

    ap = argparse.ArgumentParser(prog="router policy check", description="validate a policy file")
    ap.add_argument("file", type=Path, nargs="?", help="default: the configured policy_file")
    args = ap.parse_args(argv)
    settings = Settings()
    path = args.file or settings.policy_file
    try:
        policies = load_policies(path, settings.server.default_max_new_tokens)
    except PolicyFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for p in policies:
        mark = "*" if p.name == policies.default else " "
        print(f"{mark} {p.name}@{p.version}  {p.rule.describe()}  levels: {', '.join(lv.name for lv in p.levels)}")
    for e in policies.experiments:
        print(_experiment_line(e.name, e.enabled, e.arms, e.shadow))
    return 0


def _experiment_line(name: str, enabled: bool, arms: Iterable[Any], shadow: Iterable[Any]) -> str:
    """One experiment as ``check`` and ``reload`` print it; arms have name, policy and weight."""
    listed = ", ".join(f"{a.name}={a.policy} ({a.weight:g})" for a in arms)
    return (f"  experiment {name} ({'enabled' if enabled else 'disabled'}): {listed}; "
            f"shadow: {', '.join(a.name for a in shadow) or 'none'}")


def reload_main(argv: list[str]) -> int:
    import grpc

    from router.client import RouterClient, error_text
    from router.config import Settings
    from router.service import ADMIN_TOKEN_KEY
    from router.v1 import router_pb2 as pb

    settings = Settings()
    ap = argparse.ArgumentParser(prog="router policy reload", description="make a running server re-read its policies")
    ap.add_argument("--target", default=f"{settings.server.host}:{settings.server.port}")
    ap.add_argument("--token", default=settings.server.admin_token, help="admin token (default: server.admin_token)")
    args = ap.parse_args(argv)
    with RouterClient(args.target) as client:
        try:
            resp = client.stub.ReloadPolicies(pb.ReloadPoliciesRequest(), timeout=client.timeout_s,
                                              metadata=[(ADMIN_TOKEN_KEY, args.token)])
        except grpc.RpcError as exc:
            print(f"error: {error_text(exc)}", file=sys.stderr)
            return 1
    print(f"reloaded from {resp.source}: " + ", ".join(f"{p.name}@{p.version}" for p in resp.policies))
    for e in resp.experiments:
        print(_experiment_line(e.name, e.enabled, e.arms, e.shadow_arms))
    return 0
