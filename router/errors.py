"""Domain errors shared by every layer.

Each error says what went wrong in words a caller can act on. The transport layer maps these
classes to status codes in one place; nothing below it knows about gRPC.
"""

from __future__ import annotations


class RouterError(Exception):
    """Base of every error the router raises on purpose."""


class InvalidArgumentError(RouterError, ValueError):
    """A request value is out of range or malformed. ``field`` names the offending input."""

    def __init__(self, field: str, description: str) -> None:
        super().__init__(f"{field}: {description}")
        self.field = field
        self.description = description


class ModelUnavailableError(RouterError):
    """A model cannot be loaded: not built, altered on disk, or its runtime is missing."""


class BuildError(ModelUnavailableError):
    """A model build step failed a check; the message says which and why."""


class ModelNotBuiltError(ModelUnavailableError):
    """A model's files or manifest are missing; the message names the command that builds them."""


class ModelIntegrityError(ModelUnavailableError):
    """A model file differs from the sha256 recorded in its manifest, or the manifest is corrupt."""


class ProviderUnavailableError(ModelUnavailableError):
    """The requested ONNX Runtime execution provider is not usable and fallback is not allowed."""


class UnknownRequestError(RouterError, LookupError):
    """A request id that this router never answered (or whose record is gone)."""


class AlreadyExistsError(RouterError):
    """A caller-chosen id that is already taken (a ``request_id`` used by an earlier request)."""


class OverloadedError(RouterError):
    """No compute slots free right now; the caller may retry after ``retry_after_s``."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class CapacityError(RouterError):
    """A request needs more than this server can ever run at once (not a momentary overload):
    retrying is useless until the caller asks for less or the operator raises a limit."""


class DeadlineTooShortError(RouterError):
    """The remaining time cannot fit even one single pass, so nothing was started."""


class NotReadyError(RouterError):
    """The server is starting or draining and takes no new work."""


class PermissionDeniedError(RouterError):
    """An admin-only call without the admin token."""


class PolicyFileError(RouterError):
    """A policy file cannot be read or is invalid; whatever was loaded before keeps serving."""
