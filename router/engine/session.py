"""ONNX Runtime session creation: provider choice, thread counts, and an honest report of both.

ONNX Runtime falls back to CPU silently when an execution provider fails to load, so after the
session exists we read back ``get_providers()`` and refuse to run on CPU unless that was allowed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import onnxruntime as ort

from router.errors import ProviderUnavailableError

log = logging.getLogger(__name__)

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"


@dataclass(frozen=True)
class SessionSettings:
    """How to open an ONNX Runtime session."""

    providers: tuple[str, ...] = (CUDA, CPU)
    allow_cpu_fallback: bool = True
    intra_op_threads: int = 0  # 0 lets ONNX Runtime pick (one per physical core)
    inter_op_threads: int = 1


_cuda_libraries_loaded = False


def _load_cuda_libraries() -> None:
    """Load the CUDA and cuDNN libraries that pip put beside onnxruntime-gpu (its ``cuda`` and
    ``cudnn`` extras), once, before the first CUDA session; without this the CUDA provider finds
    them only on the system's library path. Libraries already loaded (by torch, say) are reused."""
    global _cuda_libraries_loaded
    preload = getattr(ort, "preload_dlls", None)  # onnxruntime-gpu >= 1.21
    if preload is not None and not _cuda_libraries_loaded:
        preload()
    _cuda_libraries_loaded = True


def open_session(model_file: Path, settings: SessionSettings) -> ort.InferenceSession:
    """Open ``model_file`` on the first usable provider of ``settings.providers``."""
    available = set(ort.get_available_providers())
    wanted = _installed(settings, available)
    if wanted and wanted[0] == CUDA:
        _load_cuda_libraries()
    missing = [p for p in settings.providers if p not in available]
    if missing:
        log.info("execution providers not installed here: %s", ", ".join(missing))
    if not wanted or (wanted[0] == CPU and settings.providers[0] != CPU):
        if not settings.allow_cpu_fallback or CPU not in available:
            raise ProviderUnavailableError(
                f"none of the requested execution providers {list(settings.providers)} is installed "
                f"(available: {sorted(available)}) and CPU fallback is not allowed. Install the "
                "'gpu' extra (onnxruntime-gpu, never together with onnxruntime) or allow CPU fallback."
            )
        wanted = [CPU]
    options = ort.SessionOptions()
    options.intra_op_num_threads = settings.intra_op_threads
    options.inter_op_num_threads = settings.inter_op_threads
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    session = ort.InferenceSession(str(model_file), sess_options=options, providers=wanted)
    in_use = session.get_providers()
    if in_use[0] != wanted[0] and not settings.allow_cpu_fallback:
        raise ProviderUnavailableError(
            f"{wanted[0]} failed to initialise (ONNX Runtime fell back to {in_use}); check the CUDA "
            "and cuDNN libraries, or allow CPU fallback."
        )
    if in_use[0] != settings.providers[0]:
        if settings.providers[0] in available:  # installed, and failed to start: worth a warning
            log.warning("running %s on %s (requested %s)", model_file.name, in_use[0], settings.providers[0])
        else:  # the usual CPU install: the provider list is a preference
            log.info("running %s on %s (%s is not installed)", model_file.name, in_use[0], settings.providers[0])
    return session


def first_installed(settings: SessionSettings) -> str:
    """The provider :func:`open_session` tries first: the first of ``settings.providers`` installed here
    (the CPU provider when none is)."""
    return next(iter(_installed(settings, set(ort.get_available_providers()))), CPU)


def _installed(settings: SessionSettings, available: set[str]) -> list[str]:
    """``settings.providers`` that are installed here, in their order."""
    return [p for p in settings.providers if p in available]


def device_of(session: ort.InferenceSession) -> str:
    """The ONNX Runtime device name (``cpu`` or ``cuda``) that the session's first provider uses."""
    return "cuda" if session.get_providers()[0] == CUDA else "cpu"
