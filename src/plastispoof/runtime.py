"""Process-wide settings that make CPU work faster. The ``plastispoof`` command applies them at start-up;
Python users call :func:`keep_freed_memory` themselves if they want the same.

PyTorch frees and re-allocates the same large buffers at every step (spectrogram frames, activations). glibc
serves buffers above a threshold with fresh ``mmap`` pages and trims the top of its heap once more than twice
that threshold is free, so every step faults the same memory in again, and the kernel zeroes it first. On the
2-core VM of docs/benchmarks.md this made a log-mel front-end 2-3x slower from run to run. jemalloc and
tcmalloc avoid it by keeping freed memory; glibc does the same once told to (``mallopt``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_MMAP_MAX = -4
MMAP_THRESHOLD = 32 * 2 ** 20  # glibc's ceiling for this setting on 64-bit systems; larger buffers stay mmapped
TRIM_THRESHOLD = 2 ** 30  # give memory back only when a whole GiB at the top of the heap is free


def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018 - only glibc has it (musl has no mallopt thresholds)
        return libc
    except (OSError, AttributeError):
        return None


def keep_freed_memory() -> bool:
    """Let glibc keep freed buffers of any size for reuse instead of returning them to the OS at every step.

    Buffers up to 32 MiB (glibc's ceiling for the mmap threshold) come from the heap; larger ones would still be
    mmapped and faulted in again at every step (AASIST's first encoder block holds maps of hundreds of MB:
    3.8-6.2 s of system time per training step on the VM of docs/benchmarks.md, 0.02 s with this), so mmap is
    switched off for malloc altogether. The price: freed memory goes back to the OS only from the top of the
    heap, once a whole GiB there is free.

    Returns whether the settings took effect (False off Linux/glibc, where nothing is changed). The effect is
    tested in ``tests/test_runtime.py`` (16 and 64 MiB buffers come from the heap and stay there after ``free``).
    """
    libc = _glibc()
    if libc is None:
        return False
    return all(bool(libc.mallopt(option, value)) for option, value in
               ((_M_MMAP_THRESHOLD, MMAP_THRESHOLD), (_M_TRIM_THRESHOLD, TRIM_THRESHOLD), (_M_MMAP_MAX, 0)))
