"""The import boundaries that make the layout the architecture, read from the source with ast.

- The pure core (relay/{engine,envelope,rules,peers,ratelimit,fragments}, any relay/ruleindex*,
  net/{frames,bpf})
  does no I/O of its own: it imports none of socket, asyncio, logging, os (environ) or
  subprocess, and from crosscast only other pure-core modules (so nothing leaks in through them).
- The topology helper does not import the relay's shell (relay/{service,capture,mesh,metrics,
  settings,status}); it may use the relay's pure core.
- Nothing in src imports crosscast.lab (a test harness, shipped for the demo) except the demo,
  the lab itself and a benchmark package (crosscast.relay.bench or crosscast.bench).

Every import counts, also one inside a function: a lazy import is still a dependency. A failure
names each module, what it imports and on which line.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

PURE_CORE = (
    "crosscast.relay.engine",
    "crosscast.relay.envelope",
    "crosscast.relay.rules",
    "crosscast.relay.peers",
    "crosscast.relay.ratelimit",
    "crosscast.relay.fragments",
    "crosscast.net.frames",
    "crosscast.net.bpf",
    "crosscast.yamlfile",
)
PURE_CORE_PREFIXES = ("crosscast.relay.ruleindex",)  # a module or a package of that name
IO_MODULES = ("socket", "asyncio", "logging", "os", "subprocess")
RELAY_SHELL = tuple(
    f"crosscast.relay.{m}"
    for m in (
        "service",
        "capture",
        "mesh",
        "metrics",
        "settings",
        "status",
        "host",
        "discovery",
        "addrwatch",
    )
)
LAB = "crosscast.lab"
LAB_USERS = ("crosscast.demo", LAB, "crosscast.relay.bench", "crosscast.bench")


@dataclass(frozen=True)
class Import:
    module: str  # the importing module
    target: str  # what it imports, absolute (`from a import b` counts as a.b and a)
    line: int

    def __str__(self) -> str:
        return f"{self.module} imports {self.target} (line {self.line})"


def module_name(path: Path, root: Path = SRC) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(module: str, source: str, is_package: bool = False) -> list[Import]:
    """Every import in `source` (module `module`), relative ones made absolute."""
    package = module if is_package else module.rpartition(".")[0]
    out: list[Import] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [Import(module, alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            out.append(Import(module, base, node.lineno))
            # `from crosscast import lab` imports crosscast.lab; `from os import environ`
            # gives os.environ, which the os rule matches by its prefix anyway.
            out += [Import(module, f"{base}.{alias.name}", node.lineno) for alias in node.names]
    return out


def _within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def is_pure_core(module: str) -> bool:
    return module in PURE_CORE or _within(module, PURE_CORE_PREFIXES)


def violations(imp: Import) -> list[str]:
    """What is wrong with one import, by the three rules (empty when nothing is)."""
    wrong = []
    if is_pure_core(imp.module):
        if _within(imp.target, IO_MODULES):
            wrong.append(f"pure core does I/O: {imp}")
        elif _within(imp.target, ("crosscast",)) and not (
            # a pure module, a name from one, or one of the packages that hold them
            is_pure_core(imp.target)
            or is_pure_core(imp.target.rpartition(".")[0])
            or imp.target in ("crosscast", "crosscast.relay", "crosscast.net")
        ):
            wrong.append(f"pure core leans on the shell: {imp}")
    if _within(imp.module, ("crosscast.topology",)) and _within(imp.target, RELAY_SHELL):
        wrong.append(f"topology imports the relay's shell: {imp}")
    if _within(imp.target, (LAB,)) and not _within(imp.module, LAB_USERS):
        wrong.append(f"only the demo may import the lab: {imp}")
    return wrong


def _all_imports() -> dict[str, list[Import]]:
    found = {}
    for path in sorted((SRC / "crosscast").rglob("*.py")):
        name = module_name(path)
        found[name] = imports_of(name, path.read_text(), path.name == "__init__.py")
    return found


ALL = _all_imports()


def test_the_source_tree_is_where_the_rules_expect_it() -> None:
    # The rules name modules; a rename must not turn them into rules about nothing.
    for name in (*PURE_CORE, *RELAY_SHELL, LAB, "crosscast.demo", "crosscast.topology.plan"):
        assert name in ALL, f"{name} not found under {SRC}"


@pytest.mark.parametrize("module", sorted(ALL))
def test_module_keeps_to_the_import_boundaries(module: str) -> None:
    imports = ALL[module]
    print(f"{module} imports: " + ", ".join(sorted({i.target for i in imports})))
    wrong = [w for imp in imports for w in violations(imp)]
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize(
    ("module", "source", "expected"),
    [
        ("crosscast.relay.engine", "import logging", "pure core does I/O"),
        ("crosscast.relay.rules", "def f():\n    import socket", "pure core does I/O"),
        ("crosscast.net.frames", "from os import environ", "pure core does I/O"),
        ("crosscast.relay.ruleindex", "import asyncio.events", "pure core does I/O"),
        ("crosscast.relay.peers", "import subprocess", "pure core does I/O"),
        ("crosscast.relay.engine", "from crosscast.relay import mesh", "leans on the shell"),
        ("crosscast.relay.engine", "from . import service", "leans on the shell"),
        ("crosscast.net.bpf", "from crosscast.net import netns", "leans on the shell"),
        ("crosscast.topology.plan", "from crosscast.relay import settings", "relay's shell"),
        ("crosscast.topology.apply", "import crosscast.relay.service", "relay's shell"),
        ("crosscast.topology.verify", "from crosscast import lab", "only the demo"),
        ("crosscast.relay.service", "from crosscast.lab.probes import x", "only the demo"),
        ("crosscast.topology.verify", "from ..lab import probes", "only the demo"),
    ],
)
def test_a_crossing_is_caught(module: str, source: str, expected: str) -> None:
    found = [w for imp in imports_of(module, source) for w in violations(imp)]
    assert any(expected in w for w in found), found


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("crosscast.relay.engine", "from crosscast.net.frames import parse_udp_frame"),
        ("crosscast.relay.engine", "from crosscast.relay.rules import RuleTable"),
        ("crosscast.relay.engine", "from crosscast.relay import envelope"),
        ("crosscast.relay.rules", "import ipaddress\nimport yaml"),
        ("crosscast.relay.service", "import socket\nimport asyncio\nimport logging"),
        ("crosscast.topology.render", "from crosscast.relay.rules import RuleTable"),
        ("crosscast.demo", "from crosscast import lab"),
        ("crosscast.lab.dns", "from crosscast.lab import registry"),
        ("crosscast.relay.bench.run", "from crosscast import lab"),
        ("crosscast.bench", "from crosscast.lab import probes"),
    ],
)
def test_an_allowed_import_passes(module: str, source: str) -> None:
    assert [w for imp in imports_of(module, source) for w in violations(imp)] == []
