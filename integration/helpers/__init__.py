"""Helpers for the integration tests: scripts run inside namespaces, and mesh datagram builders."""
