"""The lease database: round trips, reopening, replacing, listing, deleting."""

from __future__ import annotations

from ipaddress import IPv4Address as IPv4
from pathlib import Path

import pytest

from crosscast.topology.leases.binding import UsageError
from crosscast.topology.leases.store import LeaseStore
from tests.topology.leases.helpers import make_binding

# --- the store ------------------------------------------------------------------------------------


def test_store_round_trips_a_binding_and_creates_its_directory(
    store: LeaseStore,
) -> None:
    b = make_binding(netns="ccl-host", dns=(IPv4("8.8.8.8"), IPv4("8.8.4.4")))
    store.put(b)
    assert store.get("container1") == b


def test_store_survives_reopening(tmp_path: Path) -> None:
    LeaseStore(tmp_path / "l.db").put(make_binding())
    assert LeaseStore(tmp_path / "l.db").get("container1") == make_binding()


def test_store_put_replaces_the_binding_of_the_same_name(store: LeaseStore) -> None:
    store.put(make_binding())
    store.put(make_binding(ip=IPv4("10.0.1.101"), gateway=None))
    assert store.all() == [make_binding(ip=IPv4("10.0.1.101"), gateway=None)]


def test_store_lists_by_name_and_deletes(store: LeaseStore) -> None:
    store.put(make_binding("b"))
    store.put(make_binding("a"))
    assert [b.name for b in store.all()] == ["a", "b"]
    assert store.delete("a")
    assert not store.delete("a")
    assert store.get("a") is None


def test_store_in_an_unwritable_place_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(UsageError, match="cannot open the lease database"):
        LeaseStore(tmp_path / "file" / "l.db").all()
