"""Read a topology file: YAML text -> a validated `Topology`, or every problem at once.

Owns the order of the work and nothing else: the shared YAML reader (crosscast.yamlfile) gives
the node tree, crosscast.topology.schema checks each section's values, crosscast.topology
.crosscheck what needs several sections, and every problem comes out as FILE:LINE:COLUMN,
top to bottom. It reads the file and never touches the system.
"""

from __future__ import annotations

from pathlib import Path

from crosscast import yamlfile
from crosscast.topology.crosscheck import UPLINK_BRIDGE, cross_check
from crosscast.topology.model import Topology
from crosscast.topology.schema import IFNAMSIZ, SchemaReader

__all__ = ["IFNAMSIZ", "UPLINK_BRIDGE", "TopologyErrors", "load_topology", "parse_topology"]


class TopologyErrors(Exception):
    """The file is not a valid topology; `problems` holds one "FILE:LINE:COLUMN: message" each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def load_topology(path: str | Path) -> Topology:
    """Read and validate the topology file at `path`."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise TopologyErrors([f"cannot read topology file {path}: {exc.strerror}"]) from exc
    except UnicodeDecodeError as exc:
        where = f"topology file {path} is not UTF-8 text"
        raise TopologyErrors([f"{where} ({exc.reason} at byte {exc.start})"]) from exc
    return parse_topology(text, str(path))


def parse_topology(text: str, filename: str) -> Topology:
    """Validate topology YAML `text` (named `filename` in messages)."""
    try:
        root = yamlfile.compose(text, filename)
    except yamlfile.YamlSyntaxError as exc:
        raise TopologyErrors([str(exc)]) from None
    problems = yamlfile.Problems(filename)
    with yamlfile.Constructor(filename) as constructor:
        sections = SchemaReader(problems, constructor).sections(root)
    if sections is not None:
        cross_check(sections, problems)
    topology = sections.topology(filename) if sections is not None and not problems else None
    if problems or topology is None:
        raise TopologyErrors(problems.lines(by_position=True))
    return topology
