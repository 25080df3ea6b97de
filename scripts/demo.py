"""`make run`'s last step: start the service, wait for SERVING, ask through the real client, stop.

    python scripts/demo.py           # start, ask, SIGTERM, wait for a clean exit
    python scripts/demo.py --keep    # leave the server running (stop it with Ctrl-C / SIGTERM)
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from router.client import RouterClient  # noqa: E402

QUESTIONS = [  # (question, forced level; "" = the policy decides)
    ("What is the capital of France?", ""),
    ("What is 17 + 25?", ""),
    ("Which is larger, 57 or 50?", ""),
    ("What is 17 + 25?", "self_consistency"),
]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=int(os.environ.get("ROUTER_SERVER__PORT", 50051)))
    parser.add_argument("--keep", action="store_true", help="leave the server running")
    args = parser.parse_args()
    server = subprocess.Popen([sys.executable, "-m", "router.cli", "serve", "--port", str(args.port)], cwd=ROOT)
    target = f"127.0.0.1:{args.port}"
    try:
        with RouterClient(target, timeout_s=60) as client:
            client.wait_until_serving(timeout_s=180)
            for q, level in QUESTIONS:
                r = client.generate(q, level=level, return_trace=True)
                d = r.decision
                print(f"\nQ: {q}\nA: {r.text.strip()}")
                print(f"   final answer: {r.answer or '(none parsed)'}")
                print(f"   decision: level={d.level} samples={d.samples} "
                      f"policy={d.policy}@{d.policy_version} ({d.reason})")
                if d.predicted_success:
                    predicted = ", ".join(f"{k} {v:.2f}" for k, v in d.predicted_success.items())
                    print(f"   difficulty {d.difficulty:.2f}; predicted success {predicted}")
                if r.trace.votes:
                    print(f"   votes: {dict(r.trace.votes)} over {r.usage.samples} samples")
                print(f"   {r.usage.prompt_tokens}+{r.usage.completion_tokens} tokens in {r.timings.total_ms:.0f} ms "
                      f"({r.usage.completion_tokens / max(r.timings.generate_ms, 1e-9) * 1000:.1f} tokens/s); "
                      f"request {r.request_id}")
            rid = r.request_id
            print(f"\nfeedback on {rid[:8]}…: created={client.feedback(rid, 'demo', score=1.0)}")
        if args.keep:
            print(f"\nserver left running on {target} (pid {server.pid}); stop it with `kill {server.pid}`")
            return 0
        server.send_signal(signal.SIGTERM)
        code = server.wait(timeout=60)
        print(f"server stopped cleanly (exit {code})" if code == 0 else f"server exited with {code}")
        return code
    except BaseException:
        if server.poll() is None:
            server.terminate()
            server.wait(timeout=30)
        raise


if __name__ == "__main__":
    raise SystemExit(main())
