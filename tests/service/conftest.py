"""Real gRPC servers on 127.0.0.1:0, running on their own event loop thread; sync clients call them."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest

from router.client import RouterClient
from router.config import Settings
from router.server import RouterServer

ADMIN_TOKEN = "test-admin-token"
TEST_POLICIES = Path(__file__).resolve().parent / "policies.yaml"


class ThreadedServer:
    """A RouterServer on a private event loop in a daemon thread."""

    def __init__(self, settings: Settings, load: bool = True) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = RouterServer(settings)
        self.run(self.server.start())
        if load:
            self.run(self.server.load(), timeout=120)
        self.target = f"127.0.0.1:{self.server.port}"

    def run(self, coro: Coroutine[Any, Any, Any], timeout: float = 60) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def submit(self, coro: Coroutine[Any, Any, Any]):
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    @property
    def core(self):
        return self.server.core

    def close(self) -> None:
        try:
            self.run(self.server.stop(0))
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)


def make_settings(
    models_dir: Path, model: str, tmp: Path, policy_file: Path = TEST_POLICIES, **server: Any
) -> Settings:
    return Settings(
        models_dir=models_dir,
        model=model,
        policy_file=policy_file,
        engine={"providers": ["CPUExecutionProvider"], "max_samples": 16},
        server={"port": 0, "metrics_port": 0, "store_path": tmp / "router.sqlite3", "admin_token": ADMIN_TOKEN,
                "max_query_chars": 2000, "grace_period_s": 5, "drain_notice_s": 0, **server},
    )


@pytest.fixture(scope="module")
def tiny_server(tiny_dir: Path, tiny: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedServer]:
    srv = ThreadedServer(make_settings(tiny_dir.parent, tiny_dir.name, tmp_path_factory.mktemp("store"),
                                       compute_slots=8, default_max_new_tokens=24))
    yield srv
    srv.close()


@pytest.fixture
def client(tiny_server: ThreadedServer) -> Iterator[RouterClient]:
    with RouterClient(tiny_server.target, timeout_s=30) as c:
        yield c
