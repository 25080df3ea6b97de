"""Write the token-selection graphs the engine runs on a GPU (router/modelbuild/selector.py) to
``router/engine/artifacts/`` with a card of their sha256s, which the engine checks before loading.

The graphs hold no weights (a few KB each) and do not depend on the model, so they are committed;
this script is how they are made. ``--check`` exits 1 if the committed files differ from what this
code writes (the test suite runs it).

    python scripts/build_token_selector.py [--check]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from router.engine.device_select import ARTIFACTS, CARD_FILE, model_file  # noqa: E402
from router.modelbuild.selector import INPUTS, KINDS, OPSET, OUTPUTS, selector_model  # noqa: E402


def rendered() -> dict[str, bytes]:
    """File name -> bytes, for every graph and the card."""
    files = {model_file(kind): selector_model(kind).SerializeToString() for kind in KINDS}
    card = {
        "what": "token selection on the engine's device: router/modelbuild/selector.py",
        "made_by": "python scripts/build_token_selector.py",
        "opset": OPSET,
        "inputs": list(INPUTS),
        "outputs": list(OUTPUTS),
        "sha256": {name: hashlib.sha256(data).hexdigest() for name, data in sorted(files.items())},
    }
    files[CARD_FILE] = (json.dumps(card, indent=2) + "\n").encode()
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="compare with the committed files, write nothing")
    args = parser.parse_args(argv)
    files = rendered()
    if args.check:
        stale = [name for name, data in files.items()
                 if not (ARTIFACTS / name).is_file() or (ARTIFACTS / name).read_bytes() != data]
        if stale:
            print(f"out of date in {ARTIFACTS}: {', '.join(stale)}; run python scripts/build_token_selector.py")
            return 1
        print("token selectors up to date")
        return 0
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (ARTIFACTS / name).write_bytes(data)
        print(f"wrote {ARTIFACTS / name} ({len(data)} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
