"""A topology file (`crosscast topology check FILE`): topology/load.py parse_topology.

Contract: TopologyErrors is bad input; anything else is a crash.
"""

from crosscast.topology.load import TopologyErrors, parse_topology
from fuzz import text

EXPECTED = (TopologyErrors,)


def one_input(data: bytes) -> None:
    parse_topology(text(data), "topology.yaml")
