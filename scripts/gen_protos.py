"""Regenerate the gRPC stubs in router/v1/ from protos/router/v1/router.proto.

    python scripts/gen_protos.py           # write the stubs
    python scripts/gen_protos.py --check   # exit 1 if the committed stubs differ (CI)

Compiling with ``-Iprotos`` makes the stubs import ``router.v1.router_pb2``: they live inside our
own package, beside nothing else.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROTO = Path("router/v1/router.proto")
OUTPUTS = ("router_pb2.py", "router_pb2.pyi", "router_pb2_grpc.py")


def generate(out_root: Path) -> None:
    import grpc_tools
    from grpc_tools import protoc

    include = Path(grpc_tools.__file__).parent / "_proto"
    args = [
        "protoc",
        f"-I{ROOT / 'protos'}",
        f"-I{include}",
        f"--python_out={out_root}",
        f"--pyi_out={out_root}",
        f"--grpc_python_out={out_root}",
        str(ROOT / "protos" / PROTO),
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--check", action="store_true", help="fail if the committed stubs are stale")
    args = parser.parse_args()
    target = ROOT / PROTO.parent
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        fresh = Path(tmp) / PROTO.parent
        if args.check:
            stale = [f for f in OUTPUTS if not (target / f).exists() or not filecmp.cmp(fresh / f, target / f, False)]
            if stale:
                hint = "run `python scripts/gen_protos.py` and commit"
                print(f"stale stubs: {', '.join(stale)}; {hint}", file=sys.stderr)
                return 1
            print("stubs match protos/")
            return 0
        target.mkdir(parents=True, exist_ok=True)
        for f in OUTPUTS:
            shutil.copy2(fresh / f, target / f)
    (target / "__init__.py").touch()
    print(f"wrote {', '.join(OUTPUTS)} to {target.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
