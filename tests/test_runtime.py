"""The allocator setting of the ``plastispoof`` command: large freed buffers stay in the process for reuse."""

from __future__ import annotations

import ctypes

import pytest

from plastispoof.runtime import MMAP_THRESHOLD, _glibc, keep_freed_memory


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]


@pytest.mark.parametrize("size", [MMAP_THRESHOLD // 2, 2 * MMAP_THRESHOLD])
def test_large_buffers_come_from_the_heap_and_stay_after_free(size):
    libc = _glibc()
    if libc is None or not hasattr(libc, "mallinfo2"):
        pytest.skip("needs glibc >= 2.33")
    libc.mallinfo2.restype = _MallInfo2
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    assert keep_freed_memory()
    # 16 MiB: above glibc's default threshold (128 KiB); 64 MiB: above the highest threshold glibc accepts.
    before = libc.mallinfo2()
    buffer = libc.malloc(size)
    during = libc.mallinfo2()
    libc.free(buffer)
    after = libc.mallinfo2()
    assert during.hblkhd == before.hblkhd  # not a separate mmap ...
    assert during.uordblks >= before.uordblks + size  # ... but heap memory in use
    assert after.arena >= before.arena and after.fordblks >= size  # freed into the heap, not trimmed away
