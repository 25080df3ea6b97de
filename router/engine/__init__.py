"""ONNX Runtime generation engine (see :mod:`router.engine.engine`)."""

from router.engine.engine import Engine, EngineStats
from router.engine.manifest import Manifest, load_manifest
from router.engine.session import SessionSettings
from router.engine.state import SequenceState
from router.engine.types import CancelToken, Completion, FinishReason, SamplingParams

__all__ = [
    "CancelToken",
    "Completion",
    "Engine",
    "EngineStats",
    "FinishReason",
    "Manifest",
    "SamplingParams",
    "SequenceState",
    "SessionSettings",
    "load_manifest",
]
