"""Coverage-guided fuzz targets for every parser that takes bytes or text from outside.

One module per target (`fuzz/<target>.py`). Each is a few lines around one public entry point:

- `one_input(data: bytes) -> None` feeds one fuzzer input to the entry point;
- `EXPECTED` is a tuple of the exception types that entry point documents for bad input (all
  `ValueError` subclasses, or `TopologyErrors`); anything else it raises is a crash, and so is a
  hang (libFuzzer's -timeout) or runaway memory (-rss_limit_mb).

`fuzz/run.py TARGET [libFuzzer flags] [CORPUS...]` runs one target under atheris; `scripts/fuzz`
runs them all and reports; `fuzz/corpus/<target>/` holds the seed inputs (`fuzz/seeds.py` builds
them from real frames, envelopes, DHCP messages, rules and topologies); tests/test_fuzz.py replays
the seeds as unit tests and runs a short fuzzing pass.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"

# Every target, in the order scripts/fuzz runs them.
TARGETS = (
    "envelope_crosscast",
    "envelope_secret",
    "envelope_snowsignal",
    "frame",
    "engine_capture",
    "engine_mesh",
    "dhcp_reply",
    "dhcp_frame",
    "arp_frame",
    "rules_text",
    "rules_yaml",
    "topology_yaml",
    "protocols",
)


SELFTEST = "selftest"  # crashes and hangs on demand: how the tests check the runner's reports


def load(target: str) -> ModuleType:
    if target not in (*TARGETS, SELFTEST):
        raise ValueError(f"unknown fuzz target {target!r}; known: {', '.join(TARGETS)}")
    return importlib.import_module(f"fuzz.{target}")


def checked(module: ModuleType) -> Callable[[bytes], None]:
    """The target's one_input with its documented bad-input exceptions swallowed."""
    one_input: Callable[[bytes], None] = module.one_input
    expected: tuple[type[BaseException], ...] = module.EXPECTED

    def run(data: bytes) -> None:
        with contextlib.suppress(*expected):
            one_input(data)

    return run


def text(data: bytes) -> str:
    """Fuzzer bytes as the text a file or env var would give (undecodable bytes replaced)."""
    return data.decode("utf-8", errors="replace")


class FormatEveryRecord(logging.Handler):
    """Formats every log record and throws it away, letting a formatting error raise.

    The standard handlers swallow such errors (Handler.handleError); under the fuzzer a log line
    that cannot be formatted from some input is a crash like any other.
    """

    def emit(self, record: logging.LogRecord) -> None:
        self.format(record)


def quiet_but_checked_logging() -> None:
    """Every crosscast log record, debug included, is formatted; none is printed."""
    root = logging.getLogger()
    root.handlers[:] = [FormatEveryRecord()]
    root.setLevel(logging.DEBUG)
