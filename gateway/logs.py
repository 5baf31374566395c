"""The gateway's log lines: text for a terminal (the default), or one JSON object per line
(`server.log_format: json`) for a log pipeline. Every line logged while a request is being
served carries its request id (and its trace id when tracing is on), taken from context
variables the HTTP layer sets; lines
may add their own fields (`extra={"fields": {...}}`)."""

from __future__ import annotations

import contextvars
import logging
import sys
import time
from typing import Any, Literal

import orjson

LogFormat = Literal["text", "json"]

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "spillover_request_id", default=None
)
trace_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "spillover_trace_id", default=None
)
_TEXT = "%(asctime)s %(levelname)s %(name)s %(message)s"


class JsonFormatter(logging.Formatter):
    def __init__(self, lane: str = "") -> None:
        super().__init__()
        self._lane = lane

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        current = request_id.get()
        if current is not None:
            line["request_id"] = current
            trace = trace_id.get()
            if trace is not None:
                line["trace_id"] = trace
        if self._lane:
            line["lane"] = self._lane
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line.update(fields)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


def setup_logging(level: str, log_format: LogFormat = "text", lane: str = "") -> None:
    """Configure the root logger (replacing what was there: a worker process sets it again
    once it has read the config). `lane`: the heavy lane's lines say so."""
    handler = logging.StreamHandler(sys.stderr)
    text = _TEXT.replace("%(name)s", f"[{lane}-lane] %(name)s") if lane else _TEXT
    handler.setFormatter(JsonFormatter(lane) if log_format == "json" else logging.Formatter(text))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # One line per health check or scrape would drown the log; failures are logged by us.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    for name in ("uvicorn", "uvicorn.error"):  # the server's own lines, in our format
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    quiet = logging.getLogger("uvicorn.access")  # `spillover.access` is the access log
    quiet.handlers.clear()
    quiet.propagate = False


_LOG_EVERY_S = 5.0


class LogThrottle:
    """One warning per (target, error class) per interval, with the count it stood for, so
    an outage is visible in the log without flooding it."""

    def __init__(self) -> None:
        self._last: dict[tuple[str, str, str], tuple[float, int]] = {}

    def allow(self, key: tuple[str, str, str]) -> int:
        """0 to stay quiet, else how many failures this line reports."""
        now = time.monotonic()
        last, suppressed = self._last.get(key, (0.0, 0))
        if now - last < _LOG_EVERY_S:
            self._last[key] = (last, suppressed + 1)
            return 0
        self._last[key] = (now, 0)
        return suppressed + 1
