"""Log line formats: `--log-format plain|json`, and no second timestamp under journald.

This module owns how a log record becomes one line. It is pure apart from what
`logging.Formatter` itself does; the choice of format is made at the edge from the settings and
the environment (`make_formatter(settings.log_format, stderr_is_journal(os.environ))`), and
nothing here reads os.environ.

- `json`: one JSON object per line (time in RFC 3339 UTC, level, logger, message, and any
  `extra=` fields a caller attached), for log shippers (Loki, Elasticsearch, Vector).
- `plain` under journald: journald stamps every line itself; systemd passes $JOURNAL_STREAM
  ("DEVICE:INODE" of the stream it connected to stderr), so a plain line there carries no time.
- `plain` elsewhere: a timestamp first, as a terminal or a container log expects.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from typing import Any

PLAIN = "plain"
JSON = "json"
FORMATS = (PLAIN, JSON)
JOURNAL_STREAM = "JOURNAL_STREAM"  # systemd.exec(5): set when stdout/stderr go to the journal

PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
JOURNAL_FORMAT = "%(levelname)s %(name)s: %(message)s"

# The attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


class JsonFormatter(logging.Formatter):
    """One JSON object per record, keys in a fixed order, never more than one line."""

    def format(self, record: logging.LogRecord) -> str:
        from datetime import UTC, datetime  # lazy: 0.5 MB of RSS that plain logs do not need

        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in entry:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        # default=str: an `extra` value that is not JSON (an address, a path) is still logged.
        return json.dumps(entry, default=str, separators=(",", ":"))


def stderr_is_journal(environ: Mapping[str, str], stderr_fd: int = 2) -> bool:
    """Whether stderr is the journal stream systemd named in $JOURNAL_STREAM (device:inode).

    Comparing the inode matters: a child started from a unit with its stderr redirected
    inherits the variable but does not write to the journal.
    """
    value = environ.get(JOURNAL_STREAM, "")
    device, _, inode = value.partition(":")
    if not (device.isdigit() and inode.isdigit()):
        return False
    try:
        stat = os.fstat(stderr_fd)
    except OSError:
        return False
    return (stat.st_dev, stat.st_ino) == (int(device), int(inode))


def make_formatter(log_format: str, journal: bool) -> logging.Formatter:
    """The formatter for `log_format` (one of FORMATS); `journal`: stderr goes to journald."""
    if log_format == JSON:
        return JsonFormatter()
    if log_format != PLAIN:
        raise ValueError(f"unknown log format {log_format!r} (choose from {', '.join(FORMATS)})")
    return logging.Formatter(JOURNAL_FORMAT if journal else PLAIN_FORMAT)
