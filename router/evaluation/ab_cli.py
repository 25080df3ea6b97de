"""``router ab report``: an experiment's A/B report from the decision store, as a text table and a PNG.

Reads the store file read-only (safe while the server writes). Exit codes: 0 done, 2 the report
cannot be made (missing file, no or unknown experiment, no feedback for the key, no matplotlib
for the PNG); the message says which.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from router.evaluation.ab import ReportError, ab_report, default_png_name, format_table, plot_report


def build_parser() -> argparse.ArgumentParser:
    """Options of ``router ab report``."""
    parser = argparse.ArgumentParser(
        prog="router ab report",
        description="Per-arm quality (mean feedback score with CI), tokens, latency and degraded share of an "
        "experiment, each arm against control (Welch's t-test) with a verdict; text table and PNG.",
    )
    parser.add_argument("--db", type=Path, default=None, help="store file (default: the configured server.store_path)")
    parser.add_argument("--experiment", default=None,
                        help="experiment name (default: the most recent experiment in the store)")
    parser.add_argument("--key", default="correct", help="feedback key whose score is the metric (default: correct)")
    parser.add_argument("--control", default=None,
                        help="control arm (default: the arm named 'control', else the alphabetically first)")
    parser.add_argument("--alpha", type=float, default=0.05, help="significance level; CIs are 1 - alpha (0.05)")
    parser.add_argument("--power", type=float, default=0.8, help="power for the sample size needed (default: 0.8)")
    parser.add_argument("--out-dir", type=Path, default=Path("."), help="folder of the default PNG (default: .)")
    parser.add_argument("--png", type=Path, default=None, help="PNG path (default: OUT_DIR/ab_<experiment>.png)")
    parser.add_argument("--no-png", action="store_true", help="write no PNG")
    parser.add_argument("--json", action="store_true", help="print the report as JSON instead of a table")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``router ab report``; the process exit code."""
    args = build_parser().parse_args(argv)
    db = args.db
    if db is None:
        from router.config import Settings

        db = Settings().server.store_path
    try:
        report = ab_report(db, args.experiment, key=args.key, control=args.control, alpha=args.alpha,
                           power=args.power)
    except ReportError as exc:
        print(f"router ab report: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
    else:
        print(format_table(report))
    if args.no_png:
        return 0
    png = args.png or args.out_dir / default_png_name(report.experiment)
    try:
        plot_report(report, png)
    except (ReportError, OSError) as exc:
        print(f"router ab report: cannot write the PNG: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {png}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
