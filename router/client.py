"""A small synchronous Python client. Every call carries a deadline (``timeout_s``, 60 s unless told)."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import grpc
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from router.v1 import router_pb2 as pb
from router.v1 import router_pb2_grpc as pb_grpc

DEFAULT_TIMEOUT_S = 60.0


class RouterClient:
    def __init__(self, target: str = "127.0.0.1:50051", timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.target = target
        self.timeout_s = timeout_s
        self.channel = grpc.insecure_channel(target, options=[("grpc.keepalive_time_ms", 30000)])
        self.stub = pb_grpc.RouterServiceStub(self.channel)
        self.health_stub = health_pb2_grpc.HealthStub(self.channel)

    def __enter__(self) -> RouterClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.channel.close()

    @staticmethod
    def request(
        text: str = "",
        messages: Sequence[Mapping[str, str]] = (),
        *,
        level: str = "",
        policy: str = "",
        unit_id: str = "",
        max_tokens: int = 0,
        max_samples: int = 0,
        deadline_ms: int = 0,
        return_trace: bool = False,
        request_id: str = "",
        **sampling: Any,
    ) -> pb.GenerateRequest:
        """Build a GenerateRequest; ``sampling`` takes temperature, top_p, top_k, seed, max_new_tokens."""
        return pb.GenerateRequest(
            query=pb.Query(text=text, messages=[pb.ChatMessage(**m) for m in messages]),
            hints=pb.RoutingHints(
                unit_id=unit_id, policy=policy, level=level, deadline_ms=deadline_ms,
                budget=pb.Budget(max_tokens=max_tokens, max_samples=max_samples),
                sampling=pb.SamplingOverrides(**{k: v for k, v in sampling.items() if v is not None}),
            ),
            return_trace=return_trace,
            request_id=request_id,
        )

    def generate(self, text: str = "", *, timeout_s: float | None = None, **kwargs: Any) -> pb.GenerateResponse:
        return self.stub.Generate(self.request(text, **kwargs), timeout=timeout_s or self.timeout_s)

    def generate_future(self, text: str = "", *, timeout_s: float | None = None, **kwargs: Any) -> grpc.Future:
        """Start a Generate call; the returned future can be cancelled."""
        return self.stub.Generate.future(self.request(text, **kwargs), timeout=timeout_s or self.timeout_s)

    def generate_stream(
        self, text: str = "", *, timeout_s: float | None = None, **kwargs: Any
    ) -> Iterator[pb.GenerateStreamResponse]:
        req = pb.GenerateStreamRequest(request=self.request(text, **kwargs))
        return self.stub.GenerateStream(req, timeout=timeout_s or self.timeout_s)

    def route(self, text: str = "", *, timeout_s: float | None = None, **kwargs: Any) -> pb.RouteResponse:
        g = self.request(text, **kwargs)
        req = pb.RouteRequest(query=g.query, hints=g.hints, request_id=g.request_id)
        return self.stub.Route(req, timeout=timeout_s or self.timeout_s)

    def feedback(
        self, request_id: str, key: str, score: float | None = None, label: str = "", comment: str = ""
    ) -> bool:
        req = pb.SubmitFeedbackRequest(request_id=request_id, key=key, label=label, comment=comment)
        if score is not None:
            req.score = score
        return self.stub.SubmitFeedback(req, timeout=self.timeout_s).created

    def list_policies(self) -> list[pb.Policy]:
        return list(self.stub.ListPolicies(pb.ListPoliciesRequest(), timeout=self.timeout_s).policies)

    def health(self, service: str = "") -> int:
        req = health_pb2.HealthCheckRequest(service=service)
        return self.health_stub.Check(req, timeout=min(self.timeout_s, 5.0)).status

    def wait_until_serving(self, timeout_s: float = 120.0) -> None:
        """Poll health until SERVING; raise TimeoutError with the last status otherwise."""
        end, last = time.monotonic() + timeout_s, "no answer"
        while time.monotonic() < end:
            try:
                status = self.health()
                if status == health_pb2.HealthCheckResponse.SERVING:
                    return
                last = health_pb2.HealthCheckResponse.ServingStatus.Name(status)
            except grpc.RpcError as exc:
                last = exc.code().name
            time.sleep(0.2)
        raise TimeoutError(f"{self.target} not SERVING after {timeout_s:.0f} s (last: {last})")


def field_violations(error: grpc.RpcError) -> list[tuple[str, str]]:
    """The ``google.rpc.BadRequest`` field violations carried by an INVALID_ARGUMENT error."""
    status = rpc_status.from_call(error)
    out = []
    for detail in status.details if status else ():
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            out += [(v.field, v.description) for v in bad.field_violations]
    return out


def error_text(error: grpc.RpcError) -> str:
    """``CODE: details [field: why; ...]``: what a command line shows for a failed call."""
    fields = "; ".join(f"{f}: {d}" for f, d in field_violations(error))
    return f"{error.code().name}: {error.details()}" + (f" [{fields}]" if fields else "")


def retry_delay_s(error: grpc.RpcError) -> float | None:
    """The ``google.rpc.RetryInfo`` delay carried by a RESOURCE_EXHAUSTED error."""
    status = rpc_status.from_call(error)
    for detail in status.details if status else ():
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            return info.retry_delay.ToMilliseconds() / 1000
    return None
