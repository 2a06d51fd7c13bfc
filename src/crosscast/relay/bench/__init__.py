"""`crosscast bench`: relays measured side by side in throw-away network namespaces.

testbed (namespaces, relay processes, generator and sink processes), generator (paced frames
through an AF_PACKET TX ring), sink (kernel receive timestamps), stats (loss, duplicates,
reordering, percentiles), search (the usable max rate), report (rows, ratios, targets, table,
JSON, plot), command (the CLI and the order of the trials). The relays are driven only through
their command lines, so the bench does not depend on their internals.

It imports nothing itself: the generator and sink run as `python -m` processes, and a package
that imported them would have them loaded twice.
"""
