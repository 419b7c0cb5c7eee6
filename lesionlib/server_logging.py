"""One log line, not a traceback, when a browser drops a request half-way (e.g. a fast upload).

The dashboard's server (uvicorn under Streamlit) logs an exception the app did not handle as
"Exception in ASGI application" with its traceback. A ``ClientDisconnect`` (Starlette: the
browser went away while its request body was read) is not a fault of the app: 14 such tracebacks
during fast uploads buried the server log. ``install`` rewrites those records to one line.
"""

from __future__ import annotations

import logging

SERVER_LOGGERS = ("uvicorn.error",)
DISCONNECT_MESSAGE = ("A browser disconnected before its request finished (ClientDisconnect, "
                      "e.g. an upload cut off); nothing from that request was used.")


def _is_disconnect(error: BaseException | None) -> bool:
    """A ``ClientDisconnect``, also inside an exception group or as a cause."""
    seen = 0
    while error is not None and seen < 8:
        if type(error).__name__ == "ClientDisconnect":
            return True
        group = getattr(error, "exceptions", None)
        if group and any(_is_disconnect(inner) for inner in group):
            return True
        error = error.__cause__ or error.__context__
        seen += 1
    return False


class DisconnectFilter(logging.Filter):
    """Turns a ``ClientDisconnect`` record into ``DISCONNECT_MESSAGE`` at WARNING, no traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and _is_disconnect(record.exc_info[1]):
            record.msg, record.args = DISCONNECT_MESSAGE, ()
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def install() -> None:
    """Add the filter to the server's loggers (once per process)."""
    for name in SERVER_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(each, DisconnectFilter) for each in logger.filters):
            logger.addFilter(DisconnectFilter())


__all__ = ["install", "DisconnectFilter", "DISCONNECT_MESSAGE"]
