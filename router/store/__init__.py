"""Decision and feedback store (SQLite by default); ``router store export`` in :mod:`router.store.export`."""

from router.store.schema import SCHEMA_VERSION, SchemaVersionError
from router.store.sqlite import SqliteStore

__all__ = ["SCHEMA_VERSION", "SchemaVersionError", "SqliteStore"]
