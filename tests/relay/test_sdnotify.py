"""sd_notify over a real AF_UNIX datagram socket: a path in tmp_path and an abstract name."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from crosscast.relay.sdnotify import Notifier, message, socket_address


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(5)
    yield sock, str(path)
    sock.close()


def test_ready_reaches_a_path_socket(receiver: tuple[socket.socket, str]) -> None:
    sock, path = receiver
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": path})
    assert notifier.ready(status="relaying on eth0")
    assert sock.recv(4096) == b"READY=1\nSTATUS=relaying on eth0"


def test_ready_reaches_an_abstract_socket() -> None:
    name = f"crosscast-test-{os.getpid()}-{id(object())}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())
        sock.settimeout(5)
        assert Notifier.from_environ({"NOTIFY_SOCKET": "@" + name}).ready()
        assert sock.recv(4096) == b"READY=1"


def test_stopping_is_its_own_datagram(receiver: tuple[socket.socket, str]) -> None:
    sock, path = receiver
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": path})
    notifier.ready()
    notifier.stopping()
    assert [sock.recv(4096), sock.recv(4096)] == [b"READY=1", b"STOPPING=1"]


@pytest.mark.parametrize("value", ["", "relative/path", "@"])
def test_without_a_usable_notify_socket_nothing_is_sent(value: str) -> None:
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": value} if value else {})
    assert not notifier.enabled
    assert not notifier.ready()


def test_a_vanished_socket_is_reported_not_raised(tmp_path: Path) -> None:
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": str(tmp_path / "gone")})
    assert notifier.enabled
    assert not notifier.ready()


def test_abstract_address_starts_with_nul_and_paths_stay_text() -> None:
    assert socket_address("@sd/notify") == b"\0sd/notify"
    assert socket_address("/run/systemd/notify") == "/run/systemd/notify"


def test_status_cannot_smuggle_another_assignment() -> None:
    assert message("READY=1", status="ok\nSTOPPING=1") == b"READY=1\nSTATUS=ok STOPPING=1"
