"""The same C allocator state in every benchmark process, so no run depends on its history.

asyncio reads a socket with ``recv(256 KiB)``: CPython allocates a 256 KiB buffer and
shrinks it to the bytes read. glibc serves a block that large with ``mmap`` until a
freed ``mmap``-ed block raises its (dynamic) threshold; until then, reading each
response costs ``mmap``, ``mremap``, ``munmap`` and a page fault. Whether, and when,
a process's threshold rises depends on what it happened to allocate and free before,
so it differed from run to run and could change in the middle of one. Measured at
concurrency 64 on a company-scoped GET: 3 system calls a response in 3 runs out of 8,
none in the others, and about 5 µs of system CPU per call between the two states.

`settle()` puts the benchmark's own process, and every process it starts afterwards
(the fake servers, the scale-out workers), in the state where a read makes no such
system call: the threshold above the buffer's size. It changes nothing under callgrind, whose
own allocator replaces glibc's.
"""

from __future__ import annotations

import os

__all__ = ["settle"]

#: Above asyncio's read buffer (256 KiB), so that buffer never comes from ``mmap``.
_MMAP_THRESHOLD = 1 << 20


def settle() -> None:
    # A freed mmap-ed block of 1 MiB raises this process's threshold to 1 MiB (and its
    # trim threshold to twice that) for the rest of its life.
    block = bytearray(_MMAP_THRESHOLD)
    del block
    # Children read their thresholds from the environment at start-up instead; set
    # there, they are fixed, so the trim threshold must be raised too (or every read
    # would grow and shrink the heap: two `brk` calls a response).
    os.environ.setdefault("MALLOC_MMAP_THRESHOLD_", str(_MMAP_THRESHOLD))
    os.environ.setdefault("MALLOC_TRIM_THRESHOLD_", str(2 * _MMAP_THRESHOLD))
