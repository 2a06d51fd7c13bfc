"""Run one fuzz target under atheris: `python fuzz/run.py TARGET [libFuzzer args...]`.

crosscast is instrumented for coverage as the target imports it; the rest of the arguments go to
libFuzzer unchanged. PyYAML is not instrumented: that made the YAML targets five times slower,
and what matters here is the paths through crosscast's own loaders (PyYAML is fuzzed upstream).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import atheris  # type: ignore[import-untyped]  # ships no type hints

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import fuzz  # (needs the repository root on sys.path first)


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1].startswith("-"):
        sys.exit(f"usage: {sys.argv[0]} TARGET [libFuzzer args...]; targets: {fuzz.TARGETS}")
    target = sys.argv.pop(1)
    fuzz.quiet_but_checked_logging()  # before the relay is built: it caches the debug level
    with atheris.instrument_imports(include=["crosscast"]):
        module = fuzz.load(target)
    # libFuzzer re-runs argv[0] for -merge (scripts/fuzz --update-corpus), -fork and -jobs: the
    # campaign's wrapper script names itself here, since this file is not executable alone.
    argv = [os.environ.get("CROSSCAST_FUZZ_ARGV0", sys.argv[0]), *sys.argv[1:]]
    atheris.Setup(argv, fuzz.checked(module))
    atheris.Fuzz()


if __name__ == "__main__":
    main()
