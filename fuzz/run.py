"""Run one fuzz target under atheris: `python fuzz/run.py TARGET [libFuzzer args...]`.

crosscast is instrumented for coverage as the target imports it; the rest of the arguments go to
libFuzzer unchanged. PyYAML is not instrumented: that made the YAML targets five times slower,
and what matters here is the paths through crosscast's own loaders (PyYAML is fuzzed upstream).
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import fuzz  # noqa: E402  (needs the repository root on sys.path first)


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1].startswith("-"):
        sys.exit(f"usage: {sys.argv[0]} TARGET [libFuzzer args...]; targets: {fuzz.TARGETS}")
    target = sys.argv.pop(1)
    fuzz.quiet_but_checked_logging()  # before the relay is built: it caches the debug level
    with atheris.instrument_imports(include=["crosscast"]):
        module = fuzz.load(target)
    atheris.Setup(sys.argv, fuzz.checked(module))
    atheris.Fuzz()


if __name__ == "__main__":
    main()
