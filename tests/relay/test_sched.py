"""relay/sched.py against this machine's kernel, in a child process (the test's own scheduling
stays as it was)."""

from __future__ import annotations

import os
import subprocess
import sys

CHILD = """
import os, sys
from crosscast.relay import sched
{before}
print(sched.request_slice({ns}))
print(os.sched_getscheduler(0), os.getpriority(os.PRIO_PROCESS, 0))
slices = [l.split(":")[1].strip() for l in open("/proc/self/sched") if l.startswith("se.slice")]
print(slices[0] if slices else "-")
"""

CUSTOM_SLICES = tuple(int(x) for x in os.uname().release.split(".")[:2]) >= (6, 12)


def child(ns: int, before: str = "") -> list[str]:
    code = CHILD.format(ns=ns, before=before)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return done.stdout.splitlines()


def test_the_slice_asked_for_is_the_one_the_kernel_runs_the_relay_with() -> None:
    said, policy_nice, slice_ns = child(300_000, before="os.nice(3)")
    assert policy_nice == f"{os.SCHED_OTHER} 3"  # the policy and the nice value are kept
    if CUSTOM_SLICES:
        assert said.startswith("0.3 ms (the kernel's default was ")
        assert slice_ns == "300000"
    else:  # an older kernel: reported, not an error
        assert said == "kept the kernel's (custom slices need Linux 6.12 or later)"


def test_a_relay_under_another_policy_keeps_it() -> None:
    before = "os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))"
    said, policy_nice, _ = child(300_000, before=before)
    assert said == f"kept the kernel's (the relay runs under scheduling policy {os.SCHED_BATCH})"
    assert policy_nice.split()[0] == str(os.SCHED_BATCH)
