"""The relay's event loop, on real descriptors: its own readers are called from select(), asyncio's
readers, timers and tasks still run, and a reader that fails does not stop the loop."""

from __future__ import annotations

import asyncio
import errno
import socket
from typing import Any

import pytest

from crosscast.relay import eventloop


def test_a_watched_descriptor_is_read_by_its_reader_and_asyncio_still_runs_its_own() -> None:
    ours, theirs = socket.socketpair(), socket.socketpair()
    got: list[bytes] = []
    try:

        async def main() -> list[bytes]:
            done = asyncio.Event()
            loop = asyncio.get_running_loop()
            eventloop.readers().watch(ours[0].fileno(), lambda: got.append(ours[0].recv(64)))
            loop.add_reader(
                theirs[0].fileno(), lambda: got.append(theirs[0].recv(64)) or done.set()
            )
            ours[1].send(b"data path")
            await asyncio.sleep(0.01)  # a timer fires while our reader is watched
            theirs[1].send(b"asyncio")
            await done.wait()
            assert loop.remove_reader(theirs[0].fileno())
            assert eventloop.readers().unwatch(ours[0].fileno())
            assert not eventloop.readers().unwatch(ours[0].fileno())
            ours[1].send(b"not read")  # unwatched: nobody reads it
            await asyncio.sleep(0.01)
            return got

        assert eventloop.run(asyncio.wait_for(main(), 5)) == [b"data path", b"asyncio"]
    finally:
        for s in (*ours, *theirs):
            s.close()


def test_a_pending_socket_error_wakes_the_reader_which_clears_it() -> None:
    # What a capture sees when its link goes down (ENETDOWN): here a UDP socket connected to a
    # loopback port nobody listens on gets ECONNREFUSED from the ICMP error.
    closed = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect(("127.0.0.1", port))
    errors: list[int] = []
    try:

        async def main() -> list[int]:
            eventloop.readers().watch(
                sock.fileno(),
                lambda: errors.append(sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)),
            )
            sock.send(b"x")
            await asyncio.sleep(0.2)  # once read, the error no longer wakes the reader
            eventloop.readers().unwatch(sock.fileno())
            return errors

        assert eventloop.run(main()) == [errno.ECONNREFUSED]
    finally:
        sock.close()


def test_a_failing_reader_is_reported_and_the_loop_goes_on() -> None:
    a, b = socket.socketpair()
    reported: list[dict[str, Any]] = []
    calls = []

    def reader() -> None:
        calls.append(a.recv(64))
        if len(calls) == 1:
            raise ValueError("a bug")

    try:

        async def main() -> None:
            asyncio.get_running_loop().set_exception_handler(lambda _loop, c: reported.append(c))
            eventloop.readers().watch(a.fileno(), reader)
            b.send(b"one")
            await asyncio.sleep(0.05)
            b.send(b"two")
            await asyncio.sleep(0.05)
            eventloop.readers().unwatch(a.fileno())

        eventloop.run(main())
    finally:
        a.close()
        b.close()
    assert calls == [b"one", b"two"]
    assert [(c["message"], str(c["exception"])) for c in reported] == [
        ("a data-path reader failed", "a bug")
    ]


def test_readers_needs_the_relay_loop() -> None:
    async def main() -> None:
        eventloop.readers()

    with pytest.raises(RuntimeError, match=r"eventloop\.Loop"):
        asyncio.run(main())


def test_a_reader_that_unwatches_another_ready_in_the_same_pass_skips_it() -> None:
    # What a netlink event does when it closes a capture whose socket is also ready.
    pairs = [socket.socketpair(), socket.socketpair()]
    called: list[int] = []

    def reader(me: int) -> None:
        called.append(me)
        eventloop.readers().unwatch(pairs[1 - me][0].fileno())
        pairs[me][0].recv(64)

    try:

        async def main() -> None:
            for _a, b in pairs:
                b.send(b"ready")
            for me, (a, _b) in enumerate(pairs):
                eventloop.readers().watch(a.fileno(), lambda me=me: reader(me))  # type: ignore[misc]
            await asyncio.sleep(0.05)
            for a, _b in pairs:
                eventloop.readers().unwatch(a.fileno())

        eventloop.run(main())
    finally:
        for pair in pairs:
            for s in pair:
                s.close()
    assert len(called) == 1


def test_what_a_reader_schedules_runs_at_once_and_timers_keep_their_time() -> None:
    a, b = socket.socketpair()
    try:

        async def main() -> tuple[float, float]:
            loop = asyncio.get_running_loop()
            woken = asyncio.Event()
            eventloop.readers().watch(a.fileno(), lambda: a.recv(64) and woken.set())
            start = loop.time()
            loop.call_later(0.05, b.send, b"x")  # the reader runs in select(), sets the event
            await woken.wait()  # no timer of asyncio's is due: only the event can wake this
            waited = loop.time() - start
            for _ in range(20):  # readers busy while a timer is due: it still fires on time
                b.send(b"y")
                await asyncio.sleep(0.005)
            eventloop.readers().unwatch(a.fileno())
            return waited, loop.time() - start - waited

        waited, slept = eventloop.run(asyncio.wait_for(main(), 5))
    finally:
        a.close()
        b.close()
    assert waited >= 0.05  # (without `scheduled`, the wait would end only at wait_for's 5 s)
    assert slept >= 20 * 0.005


def test_asyncio_streams_run_on_it() -> None:
    # The metrics listener's kind of traffic: a server, a client, readers and writers that
    # asyncio registers, modifies and unregisters on the selector, on loopback.
    async def main() -> bytes:
        async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write((await reader.readline()) * 20000)  # more than one write's worth
            await writer.drain()
            writer.close()
            await writer.wait_closed()

        server = await asyncio.start_server(echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"ping\n")
        got = await reader.read()
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()
        return got

    assert eventloop.run(asyncio.wait_for(main(), 5)) == b"ping\n" * 20000
