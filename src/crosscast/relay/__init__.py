"""The relay: a pure core (rules, envelope, peers, engine) and a thin shell (capture, mesh, ...)."""
