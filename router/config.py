"""Typed settings: defaults < YAML file (``ROUTER_CONFIG``) < ``ROUTER_*`` environment variables.

Nested values use ``__`` in the environment, e.g. ``ROUTER_ENGINE__INTRA_OP_THREADS=2``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from router.engine.engine import DEVICE_SELECTION_MIN_ROWS
from router.engine.session import CPU, CUDA, SessionSettings
from router.modelbuild.catalog import DEFAULT_MODEL

if TYPE_CHECKING:
    from router.engine import Engine

PACKAGE_DIR = Path(__file__).resolve().parent


def _default_models_dir() -> Path:
    return PACKAGE_DIR.parent / "models"


class EngineSettings(BaseModel):
    """ONNX Runtime session and batch limits."""

    providers: list[str] = Field(default_factory=lambda: [CUDA, CPU])
    allow_cpu_fallback: bool = True
    intra_op_threads: int = Field(default=0, ge=0)
    inter_op_threads: int = Field(default=1, ge=1)
    max_samples: int = Field(default=64, ge=1, le=1024)
    # A second build of the same weights for one-row decode steps (e.g. "smollm2-135m-instruct-q4":
    # 1.14x faster single passes, same tokens, +390 MB peak RSS here); "" = off. See README, Models.
    single_row_model: str = ""
    # KV cache layout: "auto" = in place on the CPU provider when the build has it (the default
    # build does; batched sampling 4-8 % faster), concat elsewhere. See router/engine/engine.py.
    kv_cache: Literal["auto", "concat", "inplace"] = "auto"
    # Greedy decode steps run the in-place graph's int8 LM head (a quarter of the head's bytes),
    # recomputing in float32 the tokens that could still be the argmax and the likely ones: the
    # float32 head's token. See router/engine/greedy_head.py.
    int8_greedy_head: bool = True
    # Sampled tokens picked on the decoder's device (router/engine/device_select.py): None = on
    # CUDA only (the host's selection was 71 % of an n=64 step there), true/false to force it;
    # in decode steps of at least device_selection_min_rows rows (below, the host is as fast or faster).
    device_selection: bool | None = None
    device_selection_min_rows: int = Field(default=DEVICE_SELECTION_MIN_ROWS, ge=1)

    def session(self) -> SessionSettings:
        return SessionSettings(
            providers=tuple(self.providers),
            allow_cpu_fallback=self.allow_cpu_fallback,
            intra_op_threads=self.intra_op_threads,
            inter_op_threads=self.inter_op_threads,
        )


class ServerSettings(BaseModel):
    """gRPC server, admission and limits."""

    host: str = "127.0.0.1"
    port: int = Field(default=50051, ge=0, le=65535)
    metrics_port: int = Field(default=9464, ge=-1, le=65535)  # -1 disables, 0 picks a free port
    compute_slots: int = Field(default=8, ge=1)  # samples that may run at once
    max_concurrent_rpcs: int = Field(default=256, ge=1)
    worker_threads: int = Field(default=4, ge=1)  # model work runs here, never on the event loop
    grace_period_s: float = Field(default=20.0, ge=0)
    # After SIGTERM, health says NOT_SERVING this long while requests are still taken, so a load
    # balancer polling health stops sending before the listener closes (set it to the poll interval).
    drain_notice_s: float = Field(default=1.0, ge=0)
    max_query_chars: int = Field(default=16_000, ge=1)
    max_message_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    keepalive_time_s: float = Field(default=30.0, gt=0)
    keepalive_timeout_s: float = Field(default=10.0, gt=0)
    retry_after_s: float = Field(default=1.0, gt=0)
    default_max_new_tokens: int = Field(default=256, ge=1)
    admin_token: str = ""  # ReloadPolicies is refused while this is empty
    store_path: Path = Path("var/router.sqlite3")
    store_queue_size: int = Field(default=10_000, ge=1)  # rows waiting for disk; more are counted and dropped


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ROUTER_", env_nested_delimiter="__", extra="forbid")

    models_dir: Path = Field(default_factory=_default_models_dir)
    model: str = DEFAULT_MODEL
    engine: EngineSettings = Field(default_factory=EngineSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    # Routing policies and experiments; re-read by the ReloadPolicies RPC.
    policy_file: Path = PACKAGE_DIR / "policy" / "default.yaml"
    # Difficulty classifier (ONNX + card); empty disables it, and then only fixed policies load.
    difficulty_dir: Path | None = PACKAGE_DIR / "difficulty" / "artifacts"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get("ROUTER_CONFIG")
        if config_file:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=config_file))
        return tuple(sources)

    def model_dir(self, name: str | None = None) -> Path:
        return self.models_dir / (name or self.model)

    def single_row_dir(self) -> Path | None:
        """The single-row decoder's directory, when one is configured."""
        return self.models_dir / self.engine.single_row_model if self.engine.single_row_model else None

    def load_engine(self, model_dir: Path | None = None) -> Engine:
        """The engine these settings describe (``model_dir`` overrides the configured model)."""
        from router.engine import Engine

        return Engine.load(model_dir or self.model_dir(), self.engine.session(), self.engine.max_samples,
                           self.single_row_dir(), device_selection=self.engine.device_selection,
                           device_selection_min_rows=self.engine.device_selection_min_rows,
                           kv_cache=self.engine.kv_cache, int8_greedy_head=self.engine.int8_greedy_head)
