"""One place where domain errors become gRPC status codes, and where every RPC is counted.

Callers get a code they can branch on and a message they can act on; bad input also carries
``google.rpc.BadRequest`` field violations, overload carries ``google.rpc.RetryInfo``. An
unexpected exception is logged with its traceback under an error id, and the caller gets
INTERNAL with that id: never the traceback.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import DecodeError
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from router.errors import (
    AlreadyExistsError,
    CapacityError,
    DeadlineTooShortError,
    InvalidArgumentError,
    ModelUnavailableError,
    NotReadyError,
    OverloadedError,
    PermissionDeniedError,
    PolicyFileError,
    RouterError,
    UnknownRequestError,
)
from router.metrics import Metrics

log = logging.getLogger(__name__)

_CODES: list[tuple[type[RouterError], grpc.StatusCode]] = [
    (InvalidArgumentError, grpc.StatusCode.INVALID_ARGUMENT),
    (UnknownRequestError, grpc.StatusCode.NOT_FOUND),
    (AlreadyExistsError, grpc.StatusCode.ALREADY_EXISTS),
    (OverloadedError, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (CapacityError, grpc.StatusCode.FAILED_PRECONDITION),
    (DeadlineTooShortError, grpc.StatusCode.DEADLINE_EXCEEDED),
    (NotReadyError, grpc.StatusCode.UNAVAILABLE),
    (ModelUnavailableError, grpc.StatusCode.UNAVAILABLE),
    (PermissionDeniedError, grpc.StatusCode.PERMISSION_DENIED),
    (PolicyFileError, grpc.StatusCode.FAILED_PRECONDITION),
]


def status_for(exc: BaseException) -> grpc.Status:
    """The rich status a domain error maps to (INTERNAL with an error id for anything else)."""
    code = next((c for cls, c in _CODES if isinstance(exc, cls)), None)
    if code is None:
        error_id = uuid.uuid4().hex[:12]
        log.error("internal error %s", error_id, exc_info=exc)
        return rpc_status.to_status(status_pb2.Status(
            code=code_pb2.INTERNAL, message=f"internal error (error id {error_id}); the server log has the details"
        ))
    details = []
    if isinstance(exc, InvalidArgumentError):
        violation = error_details_pb2.BadRequest.FieldViolation(field=exc.field, description=exc.description)
        details.append(_pack(error_details_pb2.BadRequest(field_violations=[violation])))
    if isinstance(exc, OverloadedError):
        delay = duration_pb2.Duration()
        delay.FromMilliseconds(int(exc.retry_after_s * 1000))
        details.append(_pack(error_details_pb2.RetryInfo(retry_delay=delay)))
    return rpc_status.to_status(status_pb2.Status(code=code.value[0], message=str(exc), details=details))


def _pack(message: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


class UnparsableRequest:
    """Stands in for a request whose bytes are not the message the method takes.

    gRPC would answer a failing deserializer with UNKNOWN, the Python exception's class in the
    message, and a traceback in the server log on every such call; the wrapped method turns this
    into INVALID_ARGUMENT instead, counted like any other call.
    """

    def __init__(self, message_type: str, reason: str) -> None:
        self.message_type, self.reason = message_type, reason

    def error(self) -> InvalidArgumentError:
        return InvalidArgumentError(
            "request", f"the request body is not a valid {self.message_type} ({self.reason}); check that the "
            "client sends this method's request message from the router.v1 API",
        )


def _tolerant(deserialize: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserialize is None:
        return None
    message_class = getattr(deserialize, "__self__", None)
    message_type = getattr(getattr(message_class, "DESCRIPTOR", None), "full_name", "request message")

    def parse(data: bytes) -> Any:
        try:
            return deserialize(data)
        except DecodeError as exc:
            return UnparsableRequest(message_type, str(exc) or "protobuf decoding failed")

    return parse


class _HandlerCapture:
    """Stands in for a server so a generated ``add_*Servicer_to_server`` hands us its handlers."""

    def __init__(self) -> None:
        self.service = ""
        self.handlers: dict[str, grpc.RpcMethodHandler] = {}

    def add_generic_rpc_handlers(self, handlers: object) -> None:
        pass

    def add_registered_method_handlers(self, service: str, handlers: dict[str, grpc.RpcMethodHandler]) -> None:
        self.service, self.handlers = service, handlers


class ErrorsAndMetrics:
    """Wraps every method of a servicer: status mapping and RPC metrics.

    Done at registration rather than as a ``grpc.aio.ServerInterceptor``: an interceptor costs an
    extra coroutine hop on every call, which showed up in the Route-vs-echo benchmark.
    """

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def register(self, add_to_server: Callable[[Any, Any], None], servicer: Any, server: grpc.aio.Server) -> None:
        """``add_to_server`` is the generated ``add_XServicer_to_server`` function."""
        capture = _HandlerCapture()
        add_to_server(servicer, capture)
        wrapped = {name: self._wrap(name, h) for name, h in capture.handlers.items()}
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(capture.service, wrapped),))
        server.add_registered_method_handlers(capture.service, wrapped)

    def _wrap(self, rpc: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        parse = _tolerant(handler.request_deserializer)
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._wrap_unary(rpc, handler.unary_unary),
                request_deserializer=parse,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._wrap_stream(rpc, handler.unary_stream),
                request_deserializer=parse,
                response_serializer=handler.response_serializer,
            )
        raise TypeError(f"{rpc}: only unary-unary and unary-stream methods are wrapped")

    def _wrap_unary(self, rpc: str, inner: Callable) -> Callable:
        async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            start, code, observed = time.perf_counter(), "OK", False
            try:
                if isinstance(request, UnparsableRequest):
                    raise request.error()
                return await inner(request, context)
            except grpc.aio.AbortError:
                code = context.code().name if context.code() else "UNKNOWN"
                raise
            except Exception as exc:  # noqa: BLE001 - every failure becomes a status, never a traceback
                status = status_for(exc)
                code = status.code.name
                # Counted before the abort sends the status, so a caller holding the error sees the count.
                self._observe(rpc, code, start, context)
                observed = True
                await context.abort(status.code, status.details, status.trailing_metadata)
            finally:
                if not observed:
                    self._observe(rpc, code, start, context)

        return unary

    def _wrap_stream(self, rpc: str, inner: Callable) -> Callable:
        async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            start, code, observed = time.perf_counter(), "OK", False
            try:
                if isinstance(request, UnparsableRequest):
                    raise request.error()
                async for item in inner(request, context):
                    yield item
            except grpc.aio.AbortError:
                code = context.code().name if context.code() else "UNKNOWN"
                raise
            except Exception as exc:  # noqa: BLE001
                status = status_for(exc)
                code = status.code.name
                self._observe(rpc, code, start, context)  # before the abort, as in unary
                observed = True
                await context.abort(status.code, status.details, status.trailing_metadata)
            finally:
                if not observed:
                    self._observe(rpc, code, start, context)

        return stream

    def _observe(self, rpc: str, code: str, start: float, context: grpc.aio.ServicerContext) -> None:
        if context.cancelled():
            code = "CANCELLED"
        self.metrics.rpcs.labels(rpc=rpc, code=code).inc()
        self.metrics.latency.labels(rpc=rpc).observe(time.perf_counter() - start)
