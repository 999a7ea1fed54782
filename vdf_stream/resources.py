"""How the process uses the machine: its C allocator set for frame-sized tensors, and the
priority of threads that must yield to the frames.

**Memory.**
Every op of the per-frame path makes a new tensor the size of a frame (0.9 MB for one
640x360 float plane, 2.8 MB for three) and frees it a moment later. glibc's ``malloc``
serves blocks over its ``mmap`` threshold (128 kB to start) with fresh pages from the kernel
and gives them back on ``free``, and returns the top of its heap to the kernel once more
than the trim threshold is free there: the next tensor of the same size then touches new
pages, and each page fault costs more than the arithmetic on it. Measured on a 2-core
virtual machine, the texture map of a 640x360 frame took 8.1 ms that way and 3.3 ms with the
freed memory kept (``benchmarks/apply_stages.py``; ``docs/speed.md``).

:func:`keep_freed_memory` raises both thresholds, so freed frames stay in the process and
are handed out again: the process's resident memory stays at its peak instead of following
each frame's, which torch's own CUDA allocator does on a GPU too. Elsewhere than glibc
(macOS, Windows, musl) it does nothing.

**Priority.** :func:`lower_priority` lowers the calling thread's scheduling priority (and
that of the threads it starts, such as an encoder's): work that must not hold up the frames
of a live stream (the optimiser, a recording's encoder) gets the time they leave.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
import threading

# mallopt parameters (glibc's malloc.h)
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3

MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's largest: blocks below it come from the heap
TRIM_THRESHOLD = 512 * 1024 * 1024  # free memory at the heap's top kept before returning it
TOP_PAD = 64 * 1024 * 1024  # the heap grows in steps this large

_done = False


def keep_freed_memory() -> bool:
    """Tell glibc to keep freed memory for the next frame (idempotent); whether it applied."""
    global _done
    if _done:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    done = all(mallopt(parameter, value) == 1 for parameter, value in (
        (_M_MMAP_THRESHOLD, MMAP_THRESHOLD), (_M_TRIM_THRESHOLD, TRIM_THRESHOLD),
        (_M_TOP_PAD, TOP_PAD)))
    _done = done
    return done


LOWEST = 19  # the scheduler's lowest priority (nice 19)


def lower_priority(niceness: int = LOWEST) -> bool:
    """Give the calling thread, and the threads it starts from now on, the priority of
    ``niceness`` (0: normal, 19: lowest). Linux sets a thread's priority on its own; elsewhere
    this does nothing. Whether it applied."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), niceness)
    except (OSError, AttributeError):
        return False
    return True
