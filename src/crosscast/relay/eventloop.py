"""The relay's event loop: asyncio's selector loop over an epoll selector that calls the data
path's readers itself.

asyncio makes a Handle of every ready descriptor, queues it and runs it later in the same pass.
uvloop does that in C, but it imports `ssl` (and with it libcrypto) for TLS, which the relay
never speaks; the `crosscast relay` command imports asyncio without `ssl` (see crosscast.cli).
Here the selector calls a data-path reader (a capture, the mesh socket, the address watch)
from inside `select()`, as soon as epoll names it. asyncio sees only its own descriptors: its
self-pipe and the metrics listener. The timers, tasks and streams are asyncio's.

Measured at 1,000 pps with minimal ring relays, this loop against uvloop: the same CPU per frame
(34-36 µs, almost all of it the wake-up) and the same latency, 16.8 MB RSS instead of 23.4.

A reader must not raise (the relay counts what goes wrong); one that does is reported to the
loop's exception handler, which logs it, and the loop goes on.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Callable, Coroutine
from time import monotonic
from typing import Any, TypeVar

T = TypeVar("T")
Reader = Callable[[], None]
_OWN = object()  # the data of a key that `Readers.watch` registered (asyncio's is a tuple)


class Readers(selectors.EpollSelector):
    """An epoll selector with readers of its own: a descriptor given to `watch` is answered by
    calling its reader from `select()`; the others go back to asyncio as usual."""

    def __init__(self, on_error: Callable[[Exception], None]) -> None:
        super().__init__()
        self._own: dict[int, Reader] = {}
        self._on_error = on_error
        self.scheduled = False  # set by the loop when something is scheduled

    def watch(self, fd: int, reader: Reader) -> None:
        """Call `reader()` whenever `fd` is readable (or has an error pending), until unwatched."""
        self.register(fd, selectors.EVENT_READ, _OWN)
        self._own[fd] = reader

    def unwatch(self, fd: int) -> bool:
        """Stop watching `fd`; whether it was watched."""
        if self._own.pop(fd, None) is None:
            return False
        self.unregister(fd)
        return True

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        """Wait up to `timeout` (None: for ever) for a descriptor of asyncio's, calling our
        readers meanwhile. Returns as soon as one of asyncio's is ready, or a reader gave
        asyncio something to do (`scheduled`), or the timeout (asyncio's next timer) is up:
        a wake-up for our readers alone does not go back through asyncio's pass, which costs
        some 8 µs of Python per wake-up (its timers are looked at, its ready queue run)."""
        self.scheduled = False
        forever = timeout is None
        deadline = 0.0 if timeout is None else monotonic() + timeout
        own = self._own
        while True:
            theirs = []
            for key, events in super().select(timeout):
                if key.data is not _OWN:
                    theirs.append((key, events))
                    continue
                # An earlier reader of this pass may have unwatched it (a capture closed): skip
                # it. One that re-opened a descriptor of the same number wakes for nothing.
                reader = own.get(key.fd)
                if reader is None:
                    continue
                try:
                    reader()
                except Exception as e:  # noqa: BLE001 -- reported; the loop must go on
                    self._on_error(e)
            if theirs or self.scheduled:
                return theirs
            if not forever:
                timeout = deadline - monotonic()
                if timeout <= 0:
                    return theirs


class Loop(asyncio.SelectorEventLoop):
    """asyncio's selector loop on a `Readers` selector, which `readers()` hands out. What is
    scheduled (a future's callbacks, a task's step, a timer) tells the selector to return."""

    def __init__(self) -> None:
        self.readers = Readers(self._reader_failed)
        super().__init__(self.readers)

    def call_soon(self, *args: Any, **kwargs: Any) -> asyncio.Handle:  # type: ignore[override]
        self.readers.scheduled = True
        return super().call_soon(*args, **kwargs)

    def call_at(self, *args: Any, **kwargs: Any) -> asyncio.TimerHandle:  # type: ignore[override]
        self.readers.scheduled = True
        return super().call_at(*args, **kwargs)

    def _reader_failed(self, e: Exception) -> None:
        self.call_exception_handler({"message": "a data-path reader failed", "exception": e})


def readers() -> Readers:
    """The running loop's readers; the relay runs on a `Loop` (see `run`)."""
    loop = asyncio.get_running_loop()
    if not isinstance(loop, Loop):
        raise RuntimeError("the relay runs on crosscast.relay.eventloop.Loop; use eventloop.run")
    return loop.readers


def run(main: Coroutine[Any, Any, T]) -> T:
    """asyncio.run on a `Loop`."""
    with asyncio.Runner(loop_factory=Loop) as runner:
        return runner.run(main)
