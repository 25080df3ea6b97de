"""gRPC load benchmark on loopback: ``Route`` next to a bare grpc.aio echo service, and health under load.

    .venv/bin/python bench/grpc.py                 # 5 s per cell, concurrency 1/8/64
    .venv/bin/python bench/grpc.py --quick         # 1 s per cell, concurrency 1/8, 32-token generations

What it measures, all in one run, with each server in its own process (as in production: the
client and the server do not share an event loop or a GIL, but on this box they share the cores):

1. ``Route`` throughput and p50/p99 latency at each concurrency level (N workers sharing one
   grpc.aio channel, requests back to back for ``--seconds`` after ``--warmup``), next to a bare
   grpc.aio unary echo service that takes the same request bytes (a serialized ``RouteRequest``)
   and answers with the same response bytes (a serialized ``RouteResponse`` from the router).
   Echo and Route alternate per level. Target: Route >= 0.8x echo throughput at every level.
   A third server in the same cells is the same router with the classifier's prediction for this
   query made once at start, not by ONNX Runtime per call: the difference is the classifier's cost.
2. ``grpc.health.v1.Health/Check`` latency (sequential, every ``--health-interval-ms``) while 4
   concurrent ``Generate`` requests run, and for comparison on the idle server. Target p99 < 50 ms.
   ``--level`` and ``--samples`` (sent as ``hints.budget.max_samples``) choose the requests; the
   default is ``best_of_n`` with 8 samples.
3. Peak RSS of each server process (psutil, sampled during the run) and of the client process.

Results go to ``grpc.json`` and ``grpc.md`` in ``--out-dir``. Every load loop is bounded in time
and in count, traffic stays on 127.0.0.1, and server processes are always stopped on exit.
"""

from __future__ import annotations

import sys
from pathlib import Path

# This file is named grpc.py: drop its own folder from sys.path (Python puts it first when the
# script is run directly), or `import grpc` would import this file instead of grpcio.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse  # noqa: E402
import asyncio  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from typing import Any  # noqa: E402

import grpc  # noqa: E402
import psutil  # noqa: E402
from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402

from bench import machine  # noqa: E402
from router.v1 import router_pb2 as pb  # noqa: E402
from router.v1 import router_pb2_grpc as pb_grpc  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
ECHO_METHOD = "/bench.Echo/Echo"
ROUTE_METHOD = "/router.v1.RouterService/Route"
ROUTE_QUERY = "Explain step by step how to add 38 and 47."
GENERATE_QUERY = "Write a long story about a robot who learns to paint, with many details."
ROUTE_TARGET = 0.8  # Route rps >= 0.8x echo rps
HEALTH_P99_TARGET_MS = 50.0
GENERATE_CONCURRENCY = 4
CALL_TIMEOUT_S = 10.0
MAX_REQUESTS_PER_CELL = 500_000  # a hard bound on any one load cell, whatever the duration
MAX_HEALTH_CHECKS = 100_000
SERVER_START_TIMEOUT_S = 300.0
SERVER_MAX_LIFETIME_S = 3600.0


# -- servers (run in child processes) ---------------------------------------------------------------
async def _serve_until_stopped(write_port, stop_async, max_lifetime_s: float) -> None:
    """Write the port, then wait for SIGTERM/SIGINT, the parent's exit, or the lifetime cap."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    write_port()
    parent, deadline = os.getppid(), time.monotonic() + max_lifetime_s
    while not stop.is_set() and os.getppid() == parent and time.monotonic() < deadline:
        try:
            await asyncio.wait_for(stop.wait(), timeout=1.0)
        except TimeoutError:
            pass
    await stop_async()


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    tmp.rename(path)


async def serve_router(args: argparse.Namespace) -> None:
    from router.config import Settings
    from router.server import RouterServer

    settings = Settings()
    settings.server.host = "127.0.0.1"
    settings.server.port = 0
    settings.server.metrics_port = -1
    settings.server.store_path = Path(args.store_path)
    settings.server.compute_slots = args.compute_slots
    server = RouterServer(settings)
    if args.fixed_response:
        # The peer that isolates the transport: the same server, interceptors and codec, with a Route
        # handler that decides once and then answers that response again (the same bytes) per call.
        route, answered = server.servicer.Route, []

        async def fixed_route(request: pb.RouteRequest, context: grpc.aio.ServicerContext) -> pb.RouteResponse:
            if not answered:
                answered.append(await route(request, context))
            return answered[0]

        server.servicer.Route = fixed_route  # before start(): start() registers the servicer's methods
    await server.start()
    await server.load()  # SERVING from here
    if args.constant_classifier and server.core is not None and server.core.scorer is not None:
        # The peer that isolates the classifier's cost: the same server, deciding the same way, with
        # the prediction for the bench's query made once here instead of by ONNX Runtime per call.
        fixed = server.core.scorer.predict(ROUTE_QUERY)
        server.core.scorer.predict = lambda text: dict(fixed)
    info = {"port": server.port, "settings": settings.model_dump(mode="json"),
            "providers": server.core.engine.providers if server.core else None,
            "min_pass_ms": round(server.core.min_pass_s * 1000, 1) if server.core else None}
    await _serve_until_stopped(lambda: _write_atomic(Path(args.port_file), json.dumps(info)),
                               lambda: server.stop(2.0), args.max_lifetime)


async def serve_echo(args: argparse.Namespace) -> None:
    payload = Path(args.payload_file).read_bytes()

    async def echo(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return payload

    server = grpc.aio.server()
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        "bench.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(echo)}),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    await _serve_until_stopped(lambda: _write_atomic(Path(args.port_file), json.dumps({"port": port})),
                               lambda: server.stop(1.0), args.max_lifetime)


# -- server processes (parent side) -----------------------------------------------------------------
class ServerProcess:
    """A child ``--serve`` process; :meth:`close` always stops it (SIGTERM, then SIGKILL)."""

    def __init__(self, kind: str, workdir: Path, extra: list[str], name: str = "") -> None:
        self.kind = name or kind
        self.port_file = workdir / f"{self.kind}.port.json"
        self.log_file = workdir / f"{self.kind}.log"
        self._log = self.log_file.open("wb")
        cmd = [sys.executable, str(Path(__file__).resolve()), "--serve", kind, "--port-file", str(self.port_file),
               "--max-lifetime", str(SERVER_MAX_LIFETIME_S), *extra]
        self.proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        self.info: dict[str, Any] = {}

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.info['port']}"

    def wait_ready(self, timeout_s: float = SERVER_START_TIMEOUT_S) -> dict[str, Any]:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if self.port_file.exists():
                self.info = json.loads(self.port_file.read_text())
                return self.info
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} server exited with {self.proc.returncode}:\n{self.log_tail()}")
            time.sleep(0.1)
        raise TimeoutError(f"{self.kind} server not ready after {timeout_s:.0f} s:\n{self.log_tail()}")

    def log_tail(self, n: int = 2000) -> str:
        try:
            return self.log_file.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def close(self) -> int | None:
        try:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(timeout=10)
        finally:
            self._log.close()
        return self.proc.returncode


class RssSampler:
    """Samples the RSS of some processes every ``interval_s`` in a thread; keeps the peak per pid."""

    def __init__(self, interval_s: float = 0.05) -> None:
        self.interval_s = interval_s
        self.peak: dict[int, int] = {}
        self._procs: dict[int, psutil.Process] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss", daemon=True)
        self._lock = threading.Lock()

    def watch(self, pid: int) -> None:
        with self._lock:
            self._procs[pid] = psutil.Process(pid)
            self.peak.setdefault(pid, 0)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            with self._lock:
                procs = list(self._procs.items())
            for pid, proc in procs:
                try:
                    self.peak[pid] = max(self.peak[pid], proc.memory_info().rss)
                except psutil.Error:
                    pass

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


# -- load ---------------------------------------------------------------------------------------------
def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in [0, 100]); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 100))))
    return ordered[rank - 1]


def _ms(x: float | None) -> float | None:
    return None if x is None else round(x * 1000, 3)


async def closed_loop(call, concurrency: int, warmup_s: float, seconds: float) -> dict[str, Any]:
    """``concurrency`` workers call ``call()`` back to back; completions inside the window count."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    window_start, window_end = start + warmup_s, start + warmup_s + seconds
    latencies: list[float] = []
    errors: dict[str, int] = {}
    issued, answered = [0], [0]

    async def worker() -> None:
        while issued[0] < MAX_REQUESTS_PER_CELL:
            now = time.perf_counter()
            if loop.time() >= window_end:
                return
            issued[0] += 1
            try:
                await call()
            except grpc.aio.AioRpcError as exc:
                errors[exc.code().name] = errors.get(exc.code().name, 0) + 1
                continue
            answered[0] += 1
            done = loop.time()
            if window_start <= done <= window_end:
                latencies.append(time.perf_counter() - now)

    await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(concurrency))),
                           timeout=warmup_s + seconds + CALL_TIMEOUT_S + 5)
    return {
        "concurrency": concurrency,
        "requests": len(latencies),
        "answered_with_warmup": answered[0],
        "rps": round(len(latencies) / seconds, 1),
        "p50_ms": _ms(percentile(latencies, 50)),
        "p99_ms": _ms(percentile(latencies, 99)),
        "max_ms": _ms(max(latencies) if latencies else None),
        "errors": errors,
        "capped_by_count": issued[0] >= MAX_REQUESTS_PER_CELL,
    }


def route_request() -> pb.RouteRequest:
    return pb.RouteRequest(query=pb.Query(text=ROUTE_QUERY), hints=pb.RoutingHints(), request_id="")


def _cpu_s(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


async def with_server_cpu(pid: int, cell) -> dict[str, Any]:  # noqa: ANN001 (a closed_loop coroutine)
    """Run one load cell; add the server process's CPU time (all its threads) per answered call,
    warm-up included on both sides of the division: what one call costs the server, whatever the
    cores it ran on, so a difference between peers is the work one does and the other does not."""
    before = _cpu_s(pid)
    result = await cell
    answered = result["answered_with_warmup"]
    result["server_cpu_us_per_call"] = round((_cpu_s(pid) - before) / answered * 1e6, 1) if answered else None
    return result


# The router servers measured against echo in every cell: row key and the hidden server flags that
# make it. "route" is the router as served; the other two isolate its parts (see parts_table).
ROUTER_PEERS = (
    ("route", ()),
    ("route_constant_classifier", ("--constant-classifier",)),
    ("route_transport", ("--fixed-response",)),
)


async def route_vs_echo(echo_target: str, peers: dict[str, str], request_bytes: bytes, levels: list[int],
                        warmup_s: float, seconds: float, expected_echo_len: int, expected: pb.Decision,
                        pids: dict[str, int]) -> list[dict[str, Any]]:
    """Echo and every router peer (``peers``: row key -> target, as in :data:`ROUTER_PEERS`), one
    after another in each cell. ``pids`` (row key or "echo" -> pid): the servers whose CPU time per
    call each cell reports."""
    rows = []
    async with contextlib.AsyncExitStack() as stack:
        channels = {key: await stack.enter_async_context(grpc.aio.insecure_channel(target))
                    for key, target in {"echo": echo_target, **peers}.items()}
        # Every client sends and receives raw bytes (no serializers), so the client does the same work
        # for every peer and the difference is the server's.
        echo = channels["echo"].unary_unary(ECHO_METHOD)
        routes = {key: channels[key].unary_unary(ROUTE_METHOD) for key in peers}
        got = await echo(request_bytes, timeout=CALL_TIMEOUT_S)
        if len(got) != expected_echo_len:
            raise RuntimeError(f"echo answered {len(got)} bytes, expected {expected_echo_len}")
        for key, call in routes.items():
            decided = pb.RouteResponse.FromString(await call(request_bytes, timeout=CALL_TIMEOUT_S)).decision
            if (decided.level, decided.reason, dict(decided.predicted_success)) != (
                    expected.level, expected.reason, dict(expected.predicted_success)):
                raise RuntimeError(f"{key} answered an unexpected decision: {decided}")  # same request, same decision

        def caller(method):  # noqa: ANN001, ANN202 - a grpc.aio multicallable
            async def call() -> None:
                await method(request_bytes, timeout=CALL_TIMEOUT_S)
            return call

        for c in levels:
            e = await with_server_cpu(pids["echo"], closed_loop(caller(echo), c, warmup_s, seconds))
            row: dict[str, Any] = {"concurrency": c, "echo": e}
            for key, method in routes.items():
                r = await with_server_cpu(pids[key], closed_loop(caller(method), c, warmup_s, seconds))
                row[key] = r
                row["ratio" if key == "route" else f"{key.removeprefix('route_')}_ratio"] = (
                    round(r["rps"] / e["rps"], 3) if e["rps"] else None)
            row["target_met"] = row["ratio"] is not None and row["ratio"] >= ROUTE_TARGET
            rows.append(row)
            print(f"  c={c:>3}: echo {e['rps']:>8.1f} rps p50 {e['p50_ms']} ms p99 {e['p99_ms']} ms server "
                  f"{e['server_cpu_us_per_call']} us/call | " + " | ".join(
                      f"{key} {row[key]['rps']:>8.1f} rps p50 {row[key]['p50_ms']} ms p99 {row[key]['p99_ms']} ms "
                      f"server {row[key]['server_cpu_us_per_call']} us/call" for key in routes)
                  + f" | ratio {row['ratio']}", flush=True)
    return rows


async def health_series(stub, until, interval_s: float, max_s: float) -> dict[str, Any]:
    """Sequential Health/Check calls every ``interval_s`` until ``until()`` or ``max_s`` passes."""
    latencies: list[float] = []
    errors: dict[str, int] = {}
    not_serving = 0
    end = time.monotonic() + max_s
    req = health_pb2.HealthCheckRequest(service="")
    while not until() and time.monotonic() < end and len(latencies) + sum(errors.values()) < MAX_HEALTH_CHECKS:
        start = time.perf_counter()
        try:
            resp = await stub.Check(req, timeout=5.0)
            latencies.append(time.perf_counter() - start)
            not_serving += resp.status != health_pb2.HealthCheckResponse.SERVING
        except grpc.aio.AioRpcError as exc:
            errors[exc.code().name] = errors.get(exc.code().name, 0) + 1
        await asyncio.sleep(interval_s)
    return {
        "checks": len(latencies),
        "p50_ms": _ms(percentile(latencies, 50)),
        "p99_ms": _ms(percentile(latencies, 99)),
        "max_ms": _ms(max(latencies) if latencies else None),
        "not_serving": not_serving,
        "errors": errors,
    }


async def health_under_load(target: str, args: argparse.Namespace) -> dict[str, Any]:
    interval = args.health_interval_ms / 1000
    async with grpc.aio.insecure_channel(target) as gen_ch, grpc.aio.insecure_channel(target) as hc_ch:
        hstub = health_pb2_grpc.HealthStub(hc_ch)
        idle = await health_series(hstub, lambda: False, interval, args.idle_health_s)
        stub = pb_grpc.RouterServiceStub(gen_ch)
        hints = pb.RoutingHints(level=args.level, budget=pb.Budget(max_tokens=args.max_tokens,
                                                                   max_samples=args.samples))
        # The same prompt for all four; it asks for a long text so that max_tokens, not EOS, ends them.
        requests = [pb.GenerateRequest(query=pb.Query(text=GENERATE_QUERY), hints=hints, return_trace=True)
                    for _ in range(GENERATE_CONCURRENCY)]
        started = time.perf_counter()
        async def generate(r: pb.GenerateRequest) -> pb.GenerateResponse:
            return await stub.Generate(r, timeout=args.generate_timeout)

        tasks = [asyncio.create_task(generate(r)) for r in requests]
        await asyncio.sleep(0.05)  # let the four reach the server before the first check
        loaded = await health_series(hstub, lambda: all(t.done() for t in tasks), interval,
                                     args.generate_timeout + 5)
        results = await asyncio.gather(*tasks, return_exceptions=True)
        wall = time.perf_counter() - started
    gens = []
    for res in results:
        if isinstance(res, grpc.aio.AioRpcError):
            gens.append({"status": res.code().name, "detail": res.details()})
        elif isinstance(res, BaseException):
            gens.append({"status": type(res).__name__, "detail": str(res)})
        else:
            gens.append({
                "status": "OK", "level": res.decision.level, "samples": res.usage.samples,
                "completion_tokens": res.usage.completion_tokens, "generate_ms": round(res.timings.generate_ms, 1),
                "queue_ms": round(res.timings.queue_ms, 1),
                "finish_reason": res.trace.candidates[0].finish_reason if res.trace.candidates else "",
            })
    tokens = sum(g.get("completion_tokens", 0) for g in gens)
    loaded["target_met"] = loaded["p99_ms"] is not None and loaded["p99_ms"] < HEALTH_P99_TARGET_MS
    return {"idle": idle, "under_load": loaded, "generate": gens, "generate_wall_s": round(wall, 2),
            "generate_tokens_per_s": round(tokens / wall, 1) if wall else None}


async def first_route(target: str) -> tuple[bytes, pb.RouteResponse]:
    async with grpc.aio.insecure_channel(target) as ch:
        hstub = health_pb2_grpc.HealthStub(ch)
        status = (await hstub.Check(health_pb2.HealthCheckRequest(service=""), timeout=5.0)).status
        if status != health_pb2.HealthCheckResponse.SERVING:
            raise RuntimeError(f"router not SERVING after load (status {status})")
        resp = await pb_grpc.RouterServiceStub(ch).Route(route_request(), timeout=CALL_TIMEOUT_S)
    return resp.SerializeToString(), resp


def machine_info() -> dict[str, Any]:
    return machine.machine_info(("grpcio", "grpcio-health-checking", "protobuf", "onnxruntime"))


# -- report -------------------------------------------------------------------------------------------
def _mib(n: int | None) -> float | None:
    return None if n is None else round(n / 2**20, 1)


def _fmt(x: Any) -> str:
    return "n/a" if x is None else str(x)


def _errs(e: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(e.items())) or "0"


def _cpu_gap(more: dict[str, Any], less: dict[str, Any]) -> float | None:
    a, b = more.get("server_cpu_us_per_call"), less.get("server_cpu_us_per_call")
    return None if a is None or b is None else round(a - b, 1)


def parts_table(rows: list[dict[str, Any]]) -> list[str]:
    """Route's server cost split by the peers of :data:`ROUTER_PEERS`, cell by cell."""
    lines = ["What each part of Route costs, from two more router servers measured in the same cells: one whose "
             "Route handler decides once and then answers that response again (the router's transport alone: "
             "interceptors, servicer, codec), and one that decides every call but with the difficulty "
             "prediction for this query made once at start (the same decision and bytes, no ONNX Runtime "
             "call). The last four columns split Route's server CPU per call: echo's, then what each "
             "part adds.", "",
             "| concurrency | transport only: rps (ratio to echo) | constant classifier: rps (ratio) "
             "| Route: rps (ratio) | echo µs | + transport µs | + deciding, no classifier µs "
             "| + the classifier µs |",
             "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        e, t, k, q = row["echo"], row["route_transport"], row["route_constant_classifier"], row["route"]
        lines.append(f"| {row['concurrency']} | {t['rps']} ({_fmt(row['transport_ratio'])}x) | {k['rps']} "
                     f"({_fmt(row['constant_classifier_ratio'])}x) | {q['rps']} ({_fmt(row['ratio'])}x) | "
                     f"{_fmt(e.get('server_cpu_us_per_call'))} | {_fmt(_cpu_gap(t, e))} | {_fmt(_cpu_gap(k, t))} | "
                     f"{_fmt(_cpu_gap(q, k))} |")
    return [*lines, ""]


def render_markdown(r: dict[str, Any]) -> str:
    m, s, rows, h = r["machine"], r["settings"], r["route_vs_echo"], r["health"]
    met = lambda ok: "met" if ok else "**NOT met**"  # noqa: E731
    lines = [
        "# gRPC benchmark: Route vs a bare grpc.aio echo service, health under load",
        "",
        machine.machine_line(r["date"], m),
        "",
        f"Settings: {s['seconds']} s measured after {s['warmup_s']} s warm-up per cell; concurrency "
        f"{'/'.join(map(str, s['concurrency']))} (workers sharing one grpc.aio channel, back to back); "
        f"per-call deadline {CALL_TIMEOUT_S:g} s. Each server runs in its own process; client and servers "
        f"share the machine's cores. Router: compute_slots {s['compute_slots']}, worker_threads "
        f"{s['router']['worker_threads']}, max_concurrent_rpcs {s['router']['max_concurrent_rpcs']}, "
        f"ORT intra_op_threads {s['router']['intra_op_threads']} (0 = ORT default), providers "
        f"{r['router_providers']}. Load average {r['load_average']['start']} at start, "
        f"{r['load_average']['end']} at end.{' Quick run.' if s['quick'] else ''}",
        "",
        "## 1. Route vs echo (same request and response bytes)",
        "",
        f"Request: serialized `RouteRequest` for \"{ROUTE_QUERY}\" ({r['payload']['request_bytes']} bytes); "
        f"response: the router's serialized `RouteResponse` ({r['payload']['response_bytes']} bytes), which the "
        "echo service returns verbatim. Both load clients send and receive raw bytes (no protobuf "
        "(de)serialization on the client), so the client's work is the same for both peers and the "
        "difference is what the router's server side costs: parsing, deciding, answering.",
        "",
        "| concurrency | echo rps | echo p50 ms | echo p99 ms | Route rps | Route p50 ms | Route p99 ms "
        f"| Route/echo | target >= {ROUTE_TARGET}x | server CPU µs per call (echo / Route) | errors (echo / Route) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        e, q = row["echo"], row["route"]
        lines.append(f"| {row['concurrency']} | {e['rps']} | {_fmt(e['p50_ms'])} | {_fmt(e['p99_ms'])} | {q['rps']} | "
                     f"{_fmt(q['p50_ms'])} | {_fmt(q['p99_ms'])} | {_fmt(row['ratio'])}x | {met(row['target_met'])} | "
                     f"{_fmt(e.get('server_cpu_us_per_call'))} / {_fmt(q.get('server_cpu_us_per_call'))} | "
                     f"{_errs(e['errors'])} / {_errs(q['errors'])} |")
    all_met = all(row["target_met"] for row in rows)
    lines += ["", f"Route >= {ROUTE_TARGET}x echo throughput at every level: {met(all_met)}.", "",
              "Server CPU per call is the server process's CPU time (every thread) over the cell, warm-up "
              "included, divided by the calls it answered. Client and servers share the cores, so once "
              "they are busy, throughput follows the CPU each call costs.", ""]
    if rows and "route_transport" in rows[0]:
        lines += parts_table(rows)
    elif rows and "route_constant_classifier" in rows[0]:  # reports before 2026-11-30 10:00
        lines += ["What the classifier costs: a third server, the same router with the difficulty prediction for "
                  "this query made once at start instead of by ONNX Runtime on every call (the same decision, "
                  "the same response bytes), measured in the same cells.", "",
                  "| concurrency | Route, constant classifier: rps | its ratio to echo | server CPU µs per call "
                  "| the classifier's share of Route's server CPU per call |",
                  "|---|---|---|---|---|"]
        for row in rows:
            k, q = row["route_constant_classifier"], row["route"]
            lines.append(f"| {row['concurrency']} | {k['rps']} | {_fmt(row['constant_ratio'])}x | "
                         f"{_fmt(k.get('server_cpu_us_per_call'))} | {_fmt(_cpu_gap(q, k))} µs |")
        lines.append("")
    idle, load = h["idle"], h["under_load"]
    lines += [
        f"## 2. Health check latency while {GENERATE_CONCURRENCY} Generate requests run",
        "",
        f"Sequential `grpc.health.v1.Health/Check` calls on their own channel, one every "
        f"{s['health_interval_ms']} ms. Generate requests: level `{s['level'] or '(policy default)'}`, "
        f"`budget.max_tokens` {s['max_tokens']}, `budget.max_samples` {s['samples']} (0 = the level's own).",
    ]
    if r["single_pass_only"]:
        lines.append(f"These were {GENERATE_CONCURRENCY} single-pass requests; the issue's check uses a "
                     "multi-sample level (the default, `best_of_n` with 8 samples).")
    lines += [
        "",
        "| phase | checks | p50 ms | p99 ms | max ms | not SERVING | errors |",
        "|---|---|---|---|---|---|---|",
        f"| idle ({s['idle_health_s']} s) | {idle['checks']} | {_fmt(idle['p50_ms'])} | {_fmt(idle['p99_ms'])} | "
        f"{_fmt(idle['max_ms'])} | {idle['not_serving']} | {_errs(idle['errors'])} |",
        f"| during {GENERATE_CONCURRENCY} Generate | {load['checks']} | {_fmt(load['p50_ms'])} | "
        f"{_fmt(load['p99_ms'])} | {_fmt(load['max_ms'])} | {load['not_serving']} | {_errs(load['errors'])} |",
        "",
        f"Health p99 under load < {HEALTH_P99_TARGET_MS:g} ms: {met(load['target_met'])}.",
        "",
        "| request | status | level | samples | completion tokens | finish | queue ms | generate ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for i, g in enumerate(h["generate"]):
        if g["status"] == "OK":
            lines.append(f"| {i} | OK | {g['level']} | {g['samples']} | {g['completion_tokens']} | "
                         f"{g['finish_reason']} | {g['queue_ms']} | {g['generate_ms']} |")
        else:
            lines.append(f"| {i} | {g['status']}: {g['detail'][:80]} | | | | | | |")
    lines += [
        "",
        f"The {GENERATE_CONCURRENCY} requests took {h['generate_wall_s']} s together "
        f"({_fmt(h['generate_tokens_per_s'])} completion tokens/s in all).",
        "",
        "## 3. Peak memory (RSS)",
        "",
        "| process | peak RSS MiB |",
        "|---|---|",
        f"| router server (model loaded, sampled every 50 ms) | {_fmt(r['memory']['router_server_peak_mib'])} |",
        f"| echo server | {_fmt(r['memory']['echo_server_peak_mib'])} |",
        f"| router server with a constant classifier "
        f"| {_fmt(r['memory'].get('constant_classifier_router_peak_mib'))} |",
        f"| router server answering a response made once "
        f"| {_fmt(r['memory'].get('transport_router_peak_mib'))} |",
        f"| load client (ru_maxrss) | {_fmt(r['memory']['client_peak_mib'])} |",
        "",
        f"Router server RSS right after load: {_fmt(r['memory']['router_server_after_load_mib'])} MiB.",
    ]
    return "\n".join(lines) + "\n"


# -- driver -------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out-dir", type=Path, default=REPO_ROOT / "bench" / "results")
    p.add_argument("--seconds", type=float, default=None, help="measured seconds per cell (default 5; 1 with --quick)")
    p.add_argument("--warmup", type=float, default=None, help="warm-up seconds per cell (default 1; 0.5 with --quick)")
    p.add_argument("--concurrency", type=str, default=None, help="comma-separated levels (default 1,8,64; 1,8 quick)")
    p.add_argument("--quick", action="store_true", help="1 s per cell, concurrency 1 and 8, 32-token generations")
    p.add_argument("--compute-slots", type=int, default=32, help="enough for 4 requests of 8 samples")
    p.add_argument("--level", default="best_of_n", help="level forced on the Generate requests ('' = policy default)")
    p.add_argument("--samples", type=int, default=8, help="hints.budget.max_samples for Generate (0 = level's own)")
    p.add_argument("--max-tokens", type=int, default=None, help="hints.budget.max_tokens (default 64; 32 quick)")
    p.add_argument("--health-interval-ms", type=float, default=10.0)
    p.add_argument("--idle-health-s", type=float, default=None, help="idle health series length (default 2; 1 quick)")
    p.add_argument("--generate-timeout", type=float, default=300.0, help="deadline of each Generate request, s")
    # hidden: the server side, run in a child process
    p.add_argument("--serve", choices=("router", "echo"), help=argparse.SUPPRESS)
    p.add_argument("--port-file", help=argparse.SUPPRESS)
    p.add_argument("--payload-file", help=argparse.SUPPRESS)
    p.add_argument("--store-path", help=argparse.SUPPRESS)
    p.add_argument("--max-lifetime", type=float, default=SERVER_MAX_LIFETIME_S, help=argparse.SUPPRESS)
    p.add_argument("--constant-classifier", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--fixed-response", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    q = args.quick
    args.seconds = args.seconds if args.seconds is not None else (1.0 if q else 5.0)
    args.warmup = args.warmup if args.warmup is not None else (0.5 if q else 1.0)
    args.max_tokens = args.max_tokens if args.max_tokens is not None else (32 if q else 64)
    args.idle_health_s = args.idle_health_s if args.idle_health_s is not None else (1.0 if q else 2.0)
    levels = args.concurrency or ("1,8" if q else "1,8,64")
    args.concurrency = [int(x) for x in levels.split(",") if x.strip()]
    if not args.serve and (args.seconds <= 0 or args.seconds > 120 or any(c < 1 or c > 1024 for c in args.concurrency)):
        p.error("--seconds must be in (0, 120] and concurrency levels in [1, 1024]")
    return args


async def run_bench(args: argparse.Namespace) -> dict[str, Any]:
    date = datetime.now(UTC).isoformat(timespec="seconds")
    load_start = [round(x, 2) for x in os.getloadavg()]
    servers: list[ServerProcess] = []
    with tempfile.TemporaryDirectory(prefix="grpc_bench_") as tmp, RssSampler() as rss:
        work = Path(tmp)
        try:
            print(f"starting router server (compute_slots {args.compute_slots}) ...", flush=True)
            router = ServerProcess("router", work, ["--compute-slots", str(args.compute_slots),
                                                    "--store-path", str(work / "router.sqlite3")])
            servers.append(router)
            rss.watch(router.pid)
            await asyncio.to_thread(router.wait_ready)
            after_load = psutil.Process(router.pid).memory_info().rss
            response_bytes, response = await first_route(router.target)
            request_bytes = route_request().SerializeToString()
            (work / "payload.bin").write_bytes(response_bytes)
            print(f"router ready on {router.target}; Route answers level '{response.decision.level}'", flush=True)
            echo = ServerProcess("echo", work, ["--payload-file", str(work / "payload.bin")])
            servers.append(echo)
            rss.watch(echo.pid)
            peers = {"route": router}
            for key, flags in ROUTER_PEERS[1:]:
                peers[key] = ServerProcess("router", work, ["--compute-slots", str(args.compute_slots), "--store-path",
                                                            str(work / f"{key}.sqlite3"), *flags], name=key)
                servers.append(peers[key])
                rss.watch(peers[key].pid)
            await asyncio.to_thread(echo.wait_ready, 60.0)
            for peer in peers.values():
                await asyncio.to_thread(peer.wait_ready)
            print(f"echo ready on {echo.target}, the router peers on "
                  f"{', '.join(p.target for p in peers.values())}; Route vs echo ...", flush=True)
            rows = await route_vs_echo(echo.target, {k: p.target for k, p in peers.items()}, request_bytes,
                                       args.concurrency, args.warmup, args.seconds, len(response_bytes),
                                       response.decision, {"echo": echo.pid, **{k: p.pid for k, p in peers.items()}})
            echo.close()
            for key, peer in peers.items():
                if key != "route":
                    peer.close()
            print(f"health under {GENERATE_CONCURRENCY} concurrent Generate "
                  f"(level '{args.level}', max_tokens {args.max_tokens}) ...", flush=True)
            health = await health_under_load(router.target, args)
            print(f"  health idle p99 {health['idle']['p99_ms']} ms; under load p50 {health['under_load']['p50_ms']} "
                  f"p99 {health['under_load']['p99_ms']} max {health['under_load']['max_ms']} ms "
                  f"({health['under_load']['checks']} checks)", flush=True)
        finally:
            codes = {s.kind: s.close() for s in servers}
        await asyncio.sleep(rss.interval_s * 2)
        peaks = dict(rss.peak)
    router_settings = router.info["settings"]
    single_only = args.level in ("", "single") and args.samples <= 1
    return {
        "date": date,
        "machine": machine_info(),
        "load_average": {"start": load_start, "end": [round(x, 2) for x in os.getloadavg()]},
        "settings": {
            "quick": args.quick, "seconds": args.seconds, "warmup_s": args.warmup, "concurrency": args.concurrency,
            "compute_slots": args.compute_slots, "level": args.level, "samples": args.samples,
            "max_tokens": args.max_tokens, "health_interval_ms": args.health_interval_ms,
            "idle_health_s": args.idle_health_s, "generate_concurrency": GENERATE_CONCURRENCY,
            "call_timeout_s": CALL_TIMEOUT_S,
            "router": {**router_settings["server"], **router_settings["engine"], "model": router_settings["model"]},
        },
        "router_providers": router.info.get("providers"),
        "router_min_pass_ms": router.info.get("min_pass_ms"),
        "payload": {"request_bytes": len(request_bytes), "response_bytes": len(response_bytes),
                    "route_decision": {"level": response.decision.level, "policy": response.decision.policy,
                                       "reason": response.decision.reason}},
        "route_vs_echo": rows,
        "route_target": ROUTE_TARGET,
        "route_target_met": all(r["target_met"] for r in rows),
        "health": health,
        "health_p99_target_ms": HEALTH_P99_TARGET_MS,
        "single_pass_only": single_only,
        "memory": {
            "router_server_peak_mib": _mib(peaks.get(router.pid)),
            "router_server_after_load_mib": _mib(after_load),
            "echo_server_peak_mib": _mib(peaks.get(echo.pid)),
            "constant_classifier_router_peak_mib": _mib(peaks.get(peers["route_constant_classifier"].pid)),
            "transport_router_peak_mib": _mib(peaks.get(peers["route_transport"].pid)),
            "client_peak_mib": round(machine.peak_rss_mb(), 1),
        },
        "server_exit_codes": codes,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve:
        if not args.port_file:
            raise SystemExit("--serve needs --port-file")
        asyncio.run(serve_router(args) if args.serve == "router" else serve_echo(args))
        return 0
    report = asyncio.run(run_bench(args))
    machine.write_report(args.out_dir, "grpc", report, render_markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
