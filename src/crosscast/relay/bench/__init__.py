"""`crosscast bench`: relays measured side by side in throw-away network namespaces.

testbed (namespaces, relay processes, generator and sink processes), generator (paced frames
through an AF_PACKET TX ring), sink (kernel receive timestamps), stats (loss, duplicates,
reordering, percentiles), search (the usable max rate), report (rows, ratios, targets, table,
JSON, plot), command (the CLI and the order of the trials). The relays are driven only through
their command lines, so the bench does not depend on their internals.
"""

from crosscast.relay.bench.command import register

__all__ = ["register"]
