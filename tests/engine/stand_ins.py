"""Stand-ins for what tests cannot open here."""

from __future__ import annotations

from router.engine.session import CPU


class CudaSessionReport:
    """What a decoder session on the CUDA provider reports (there is no GPU here to open one): its
    providers, and the inputs of the concat graph it would run (no int8 head switch)."""

    def get_providers(self) -> list[str]:
        return ["CUDAExecutionProvider", CPU]

    def get_inputs(self) -> list:
        return []
