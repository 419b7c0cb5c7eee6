"""One SQL database (SQLite or PostgreSQL, SQLAlchemy Core) shared by the stores built on it.

``Database`` parses the URL, creates the engine (SQLite in WAL mode with a busy timeout, so several
threads and processes can write one file; PostgreSQL through ``postgresql+psycopg://``), and runs
reads and writes with retries while the database is busy. Every failure is a ``DatabaseError``
(or the store's own subclass of it) whose message says where the database is and why it failed.
Used by ``lesionlib.feedback`` (reviews, audit log) and ``lesionlib.reader_study``.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import time
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

RETRY_DELAYS_S = (0.1, 0.5)  # after the busy timeout itself: three attempts in all


class DatabaseError(RuntimeError):
    """The database could not be opened, read or written; the message says where and why.

    Attributes:
        record: what was not saved (``None`` for other operations). It was not written; the
            caller still has it and can save it again.
    """

    def __init__(self, message: str, record=None):
        super().__init__(message)
        self.record = record


class Database:
    """One database: engine, location, and retried transactions.

    Args:
        url: SQLAlchemy database URL, e.g. ``"sqlite:////srv/lesion/feedback.db"``.
        timeout_s: how long one attempt waits for a locked database (SQLite busy timeout) or for
            a connection (PostgreSQL).
        title: how messages name the database, e.g. ``"feedback database"``.
        error_type: the ``DatabaseError`` subclass raised.

    Raises:
        ValueError: ``url`` is not a database URL.
    """

    def __init__(self, url: str, *, timeout_s: float, title: str,
                 error_type: type[DatabaseError] = DatabaseError):
        try:
            self.url = sa.engine.make_url(url)
        except sa_exc.ArgumentError:
            scheme = str(url).split(":", 1)[0]
            raise ValueError(f"Not a database URL (scheme {scheme!r}); expected e.g. "
                             "'sqlite:///path/feedback.db' or "
                             "'postgresql+psycopg://user:password@host/database'.") from None
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        self.location = _describe_location(self.url)
        self.title = title
        self.error_type = error_type
        self.engine = _create_engine(self.url, timeout_s)
        # SQLite has one writer at a time anyway: queue this process's threads here rather than
        # in SQLite's busy handler.
        self._write_lock = threading.Lock() if self.is_sqlite else contextlib.nullcontext()

    def close(self) -> None:
        """Close the connections (the database cannot be used afterwards)."""
        self.engine.dispose()

    def write(self, operation, what: str, record=None, lost_message: str | None = None):
        """Run ``operation(connection)`` in a transaction, retrying while the database is busy.

        ``what`` completes "Could not ..."; ``record`` is what the caller still holds when the
        write fails, and ``lost_message`` what the message then tells the user about it."""
        for attempt, delay in enumerate((*RETRY_DELAYS_S, None), start=1):
            try:
                with self._write_lock, self.engine.begin() as connection:
                    return operation(connection)
            except sa_exc.SQLAlchemyError as error:
                if delay is None or not is_transient(error):
                    raise self.error(what, error, attempt, record, lost_message) from error
            time.sleep(delay)
        raise AssertionError("unreachable")  # the loop returns or raises

    def read(self, query, what: str) -> list:
        """The rows of ``query`` as mappings."""
        try:
            with self.engine.connect() as connection:
                return list(connection.execute(query).mappings())
        except sa_exc.SQLAlchemyError as error:
            raise self.error(what, error, 1) from error

    def error(self, what: str, error: Exception, attempts: int, record=None,
              lost_message: str | None = None) -> DatabaseError:
        """The ``error_type`` for a failed ``what``, with the location and a plain reason."""
        reason = _explain(error)
        if is_transient(error):
            reason += f" (still busy after {attempts} attempts)"
        message = f"Could not {what} in the {self.title} at {self.location}: {reason}."
        if record is not None and lost_message:
            message += " " + lost_message
        return self.error_type(message, record)


def _create_engine(url: sa.engine.URL, timeout_s: float) -> sa.engine.Engine:
    if url.get_backend_name() != "sqlite":
        connect_args = ({"connect_timeout": max(1, round(timeout_s))}
                        if url.get_backend_name() == "postgresql" else {})
        return sa.create_engine(url, pool_pre_ping=True, connect_args=connect_args)
    in_memory = url.database in (None, "", ":memory:")
    engine = sa.create_engine(
        url, connect_args={"timeout": timeout_s, "check_same_thread": False},
        poolclass=sa.pool.StaticPool if in_memory else None)
    sa.event.listen(engine, "connect",
                    functools.partial(_configure_sqlite, busy_timeout_ms=int(timeout_s * 1000)))
    return engine


def _configure_sqlite(dbapi_connection, _connection_record, busy_timeout_ms: int) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        cursor.execute("PRAGMA journal_mode = WAL")  # readers never block the writer
        cursor.execute("PRAGMA synchronous = NORMAL")  # durable across app crashes in WAL mode
    finally:
        cursor.close()


def _describe_location(url: sa.engine.URL) -> str:
    if url.get_backend_name() == "sqlite":
        database = url.database or ":memory:"
        return f"SQLite file {Path(database).resolve()}" if database != ":memory:" else \
            "an in-memory SQLite database"
    return url.render_as_string(hide_password=True)


def is_transient(error: Exception) -> bool:
    text = str(getattr(error, "orig", error)).lower()
    # the last three: several app servers creating or migrating the tables at the same moment
    return any(marker in text for marker in ("database is locked", "database is busy",
                                             "deadlock detected", "could not serialize",
                                             "already exists", "duplicate key value",
                                             "duplicate column name"))


def _explain(error: Exception) -> str:
    original = getattr(error, "orig", None) or error
    text = str(original).strip().split("\n")[0][:300]
    lowered = text.lower()
    if "database is locked" in lowered or "database is busy" in lowered:
        return f"the database is locked by another connection or process ({text})"
    if "not a database" in lowered or "malformed" in lowered:
        return f"the file is not a valid SQLite database or is damaged ({text})"
    if "unable to open database file" in lowered:
        return (f"the file cannot be opened; check that its folder exists and is writable "
                f"({text})")
    return f"{type(original).__name__}: {text}"
