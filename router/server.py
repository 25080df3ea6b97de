"""The gRPC server, composed top to bottom: settings, server and options, health and reflection,
model load, then serve until SIGTERM, drain, and close the store.

Health says NOT_SERVING until the model is loaded and warmed up, and again from the moment a
shutdown starts, so load balancers stop sending work before the listener closes.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from concurrent.futures import ThreadPoolExecutor

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from router.admission import ComputeSlots
from router.config import Settings
from router.core import CoreLimits, Router
from router.difficulty.scorer import DifficultyScorer
from router.interceptors import ErrorsAndMetrics
from router.metrics import Metrics
from router.policy import PolicySet, load_policies
from router.service import RouterServicer
from router.store import SqliteStore
from router.v1 import router_pb2, router_pb2_grpc

log = logging.getLogger(__name__)

SERVICE_NAME = router_pb2.DESCRIPTOR.services_by_name["RouterService"].full_name


class RouterServer:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.servicer = RouterServicer(self.metrics, settings.server.admin_token)
        self.executor = ThreadPoolExecutor(settings.server.worker_threads, thread_name_prefix="model")
        self.store: SqliteStore | None = None
        self.core: Router | None = None
        self.port = 0
        self.metrics_port: int | None = None
        # grpc.aio objects bind to the running event loop, so they are made in start().
        self.health: health.aio.HealthServicer | None = None
        self.server: grpc.aio.Server | None = None

    def _build(self) -> None:
        s = self.settings.server
        self.health = health.aio.HealthServicer()
        self.server = grpc.aio.server(
            maximum_concurrent_rpcs=s.max_concurrent_rpcs,
            options=[
                ("grpc.max_receive_message_length", s.max_message_bytes),
                ("grpc.max_send_message_length", s.max_message_bytes),
                ("grpc.keepalive_time_ms", int(s.keepalive_time_s * 1000)),
                ("grpc.keepalive_timeout_ms", int(s.keepalive_timeout_s * 1000)),
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.http2.min_ping_interval_without_data_ms", 5000),
                ("grpc.so_reuseport", 0),
            ],
        )
        ErrorsAndMetrics(self.metrics).register(
            router_pb2_grpc.add_RouterServiceServicer_to_server, self.servicer, self.server
        )
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            [SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME],
            self.server,
        )

    async def _set_health(self, status: int) -> None:
        for name in ("", SERVICE_NAME):
            await self.health.set(name, status)

    async def start(self) -> None:
        """Listen (health NOT_SERVING) and start the metrics endpoint; the model loads in :meth:`load`."""
        s = self.settings.server
        self._build()
        self.port = self.server.add_insecure_port(f"{s.host}:{s.port}")
        await self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        await self.server.start()
        if s.metrics_port >= 0:
            self.metrics_port = self.metrics.serve(s.metrics_port, addr=s.host)
        metrics = f"metrics on :{self.metrics_port}" if self.metrics_port is not None else "metrics off"
        log.info("listening on %s:%d (%s)", s.host, self.port, metrics)

    async def load(self) -> None:
        """Read the model once, warm it up, then report SERVING."""
        s, e = self.settings.server, self.settings.engine
        engine = await asyncio.to_thread(self.settings.load_engine)
        slots = ComputeSlots(s.compute_slots, s.retry_after_s)
        self.metrics.slots_capacity.set(s.compute_slots)
        self.metrics.slots_in_use.set_function(lambda: slots.in_use)
        scorer = None
        if self.settings.difficulty_dir:
            scorer = await asyncio.to_thread(DifficultyScorer, self.settings.difficulty_dir)

        def read_policies() -> PolicySet:
            return load_policies(self.settings.policy_file, s.default_max_new_tokens)

        policies = read_policies()
        self.store = SqliteStore(s.store_path, queue_size=s.store_queue_size)
        self.metrics.watch_store(self.store.stats)
        core = Router(
            engine, policies, slots, self.store, self.executor,
            CoreLimits(max_query_chars=s.max_query_chars, max_samples=e.max_samples),
            scorer=scorer, policy_loader=read_policies,
        )
        await asyncio.get_running_loop().run_in_executor(self.executor, core.warm_up)
        self.core = self.servicer.core = core
        await self._set_health(health_pb2.HealthCheckResponse.SERVING)
        log.info("serving %s on %s (%s KV cache%s)", engine.name, engine.providers[0], engine.kv_cache,
                 ", int8 greedy head" if engine.int8_greedy_head else "")

    async def stop(self, grace: float | None = None, notice: float | None = None) -> None:
        """NOT_SERVING; ``notice`` s later refuse new work; let in-flight RPCs finish up to ``grace`` s; close."""
        s = self.settings.server
        grace = s.grace_period_s if grace is None else grace
        notice = s.drain_notice_s if notice is None else notice
        await self.health.enter_graceful_shutdown()
        if notice > 0 and self.core is not None:
            await asyncio.sleep(notice)  # health answers NOT_SERVING; requests are still served
        if self.core is not None:
            self.core.accepting = False
        await self.server.stop(grace)
        await asyncio.to_thread(self.executor.shutdown, wait=True, cancel_futures=True)
        if self.store is not None:
            await asyncio.to_thread(self.store.close)


async def serve(settings: Settings) -> int:
    """Run until SIGTERM/SIGINT; exit code 0 after a clean drain, 2 if the model cannot load."""
    server = RouterServer(settings)
    await server.start()
    print(f"router listening on {settings.server.host}:{server.port}"
          + (f", metrics on :{server.metrics_port}" if server.metrics_port else ""), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loading = asyncio.create_task(server.load())
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({loading, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if loading.done() and loading.exception() is not None:
        log.error("cannot start: %s", loading.exception())
        print(f"error: {loading.exception()}", flush=True)
        await server.stop(0, notice=0)
        return 2
    if loading.done():
        print("router ready", flush=True)
        await stopping
    print("router draining", flush=True)
    loading.cancel()
    await server.stop()
    print("router stopped", flush=True)
    return 0
