"""The relay: a pure core (rules, envelope, peers, engine) and a thin shell (capture, mesh, ...).

`READY` is part of the relay's outward contract, so it lives here, importable without the
shell: the service logs a line starting with it once its sockets are open, and whoever starts
a relay (topology apply, the demo, the integration tests) waits for that word.
"""

READY = "ready"
