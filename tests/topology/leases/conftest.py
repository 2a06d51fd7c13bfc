"""The lease tests' store: a fresh SQLite file in a directory that does not exist yet."""

from __future__ import annotations

from pathlib import Path

import pytest

from crosscast.topology.leases.store import LeaseStore


@pytest.fixture
def store(tmp_path: Path) -> LeaseStore:
    return LeaseStore(tmp_path / "sub" / "leases.sqlite3")
