"""Machine facts every benchmark report starts with: CPU, cores, memory, versions, commit, load."""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import resource
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psutil

REPO_ROOT = Path(__file__).resolve().parents[1]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def git_commit() -> str | None:
    """HEAD, suffixed ``-dirty`` when tracked files have uncommitted changes; ``BENCH_GIT_COMMIT``
    names it where the checkout was copied without ``.git`` (a lent GPU machine)."""
    if os.environ.get("BENCH_GIT_COMMIT"):
        return os.environ["BENCH_GIT_COMMIT"]
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout

    try:
        commit = git("rev-parse", "HEAD").strip()
        dirty = bool(git("status", "--porcelain", "--untracked-files=no").strip())
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + ("-dirty" if dirty else "")


def peak_rss_mb() -> float:
    """This process's peak resident set size so far, MiB (``ru_maxrss`` is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine_info(versions: Sequence[str]) -> dict[str, Any]:
    return {
        "cpu": cpu_model(),
        "logical_cores": os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "versions": {d: version(d) for d in versions},
        "git_commit": git_commit(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def machine_line(date: str, m: dict[str, Any], *extra: str) -> str:
    """The line under a report's title: when, on what machine, with which versions, at which commit
    (``m`` is :func:`machine_info`'s dict), then ``extra`` items."""
    parts = [date, m["cpu"], f"{m['logical_cores']} logical / {m['physical_cores']} physical cores",
             f"{m['ram_gb']} GB RAM", f"Python {m['python']}", *(f"{k} {v}" for k, v in m["versions"].items()),
             f"commit {(m['git_commit'] or 'unknown')[:12]}", *extra]
    return " · ".join(parts)


def write_report(out_dir: Path, stem: str, report: dict[str, Any], markdown: str) -> None:
    """``STEM.json`` (the data) and ``STEM.md`` (its rendering) in ``out_dir``; the markdown is printed."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    (out_dir / f"{stem}.md").write_text(markdown)
    print(markdown)
