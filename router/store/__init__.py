"""Decision and feedback store (SQLite by default)."""

from router.store.sqlite import SqliteStore

__all__ = ["SqliteStore"]
