"""The relay's request to the CPU scheduler: a short EEVDF slice (Linux 6.12+).

A relay does a few microseconds of work per wake-up and is latency-sensitive: a frame waits for
as long as the relay waits for a CPU. On Linux 6.12 and later a SCHED_OTHER task may ask for a
shorter time slice than the default (0.7 ms x (1 + log2 CPUs)): `sched_setattr` with
`sched_runtime` set, clamped by the kernel to 0.1-100 ms, no privilege needed. A short slice
gives the task an earlier virtual deadline, so when a frame wakes it, it preempts a task with the
default slice instead of queueing behind it, and a task it wakes (a receiver of the frame it just
sent) no longer preempts it between its `send` and its next wait. Its share of the CPU is
unchanged: that is the task's weight (nice), not its slice.

Measured with `crosscast bench`, 64 B payloads, old and new relays interleaved (two pairs, the
2-core VM, Linux 6.18): router mode p50 at 1,000 pps 32-35 -> 26 µs (the kernel path: 6 µs),
mesh mode 109-122 -> 99-101 µs; involuntary context switches of the router relay 0.51 -> 0.00
per relayed frame; usable max within the noise.

Only the calling thread is changed, and only if it runs SCHED_OTHER: a relay that an operator
started under a real-time policy (chrt) keeps it. Its nice value is kept. On an older kernel the
call succeeds and changes nothing (`sched_getattr` then reports no slice), which is reported,
never an error.
"""

from __future__ import annotations

import os
import platform
import struct

SCHED_OTHER = 0

# (sched_setattr, sched_getattr) by machine; the generic table (arm64, riscv) shares numbers.
_SYSCALLS = {
    "x86_64": (314, 315),
    "aarch64": (274, 275),
    "riscv64": (274, 275),
    "armv7l": (380, 381),
    "armv6l": (380, 381),
}
# struct sched_attr, SCHED_ATTR_SIZE_VER0: size, policy, flags, nice, priority, runtime,
# deadline, period
_ATTR = struct.Struct("=IIQiIQQQ")


def request_slice(ns: int) -> str:
    """Ask for a slice of `ns` nanoseconds for the calling thread; what came of it, for the log."""
    numbers = _SYSCALLS.get(platform.machine())
    if numbers is None:
        return f"kept the kernel's (no sched_setattr number known for {platform.machine()})"
    try:
        import ctypes  # only here: 0.7 MB of RSS, for one call at start-up

        libc = ctypes.CDLL(None, use_errno=True)
    except (ImportError, OSError) as e:  # a Python built without ctypes, a libc it cannot load
        return f"kept the kernel's (no ctypes: {e})"
    set_nr, get_nr = numbers
    buf = ctypes.create_string_buffer(_ATTR.size)
    if libc.syscall(get_nr, 0, buf, _ATTR.size, 0) != 0:
        return f"kept the kernel's (sched_getattr: {os.strerror(ctypes.get_errno())})"
    _size, policy, _flags, nice, priority, runtime, _dl, _period = _ATTR.unpack(buf.raw)
    if policy != SCHED_OTHER:
        return f"kept the kernel's (the relay runs under scheduling policy {policy})"
    if runtime == 0:  # before Linux 6.12 a SCHED_OTHER task has no slice to report or change
        return "kept the kernel's (custom slices need Linux 6.12 or later)"
    request = _ATTR.pack(_ATTR.size, SCHED_OTHER, 0, nice, priority, ns, 0, 0)
    if libc.syscall(set_nr, 0, ctypes.create_string_buffer(request, _ATTR.size), 0) != 0:
        return f"kept the kernel's {runtime / 1e6:g} ms ({os.strerror(ctypes.get_errno())})"
    libc.syscall(get_nr, 0, buf, _ATTR.size, 0)
    return f"{_ATTR.unpack(buf.raw)[5] / 1e6:g} ms (the kernel's default was {runtime / 1e6:g} ms)"
