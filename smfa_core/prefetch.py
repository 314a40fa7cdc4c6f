"""Read-ahead of the next tensor's bytes on a background thread.

Reading three checkpoints chunk by chunk, interleaved, runs at a fraction of the disk's
sequential speed. This thread reads the byte ranges the engine will need next, one file
range at a time in large sequential reads (what `cat` does), into a small private buffer
it throws away: the pages land in the page cache, where the engine's own reads find them.
It holds no more than its one buffer; the page cache is the kernel's to evict. It stays at
most `budget` bytes ahead of what the engine has used, so on models larger than RAM its
pages are not evicted before the engine gets to them.
"""

from __future__ import annotations

import os
import queue
import threading

import numpy as np

READ_BYTES = 8 << 20


class Prefetcher:
    def __init__(self, budget: int = 2 << 30) -> None:
        self._jobs: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self._budget = budget
        self._read = 0  # bytes queued ranges the thread has started on
        self._used = 0  # bytes the engine says it is done with
        self._cv = threading.Condition()
        self._thread = threading.Thread(target=self._work, name="smfa-prefetch", daemon=True)
        self._thread.start()

    def ahead(self, ranges: list[tuple[str, int, int]]) -> None:
        """Queue (path, start byte, end byte) ranges, read in the given order."""
        for r in ranges:
            self._jobs.put(r)

    def used(self, nbytes: int) -> None:
        """The engine is done with `nbytes` of the queued ranges: read further ahead."""
        with self._cv:
            self._used += nbytes
            self._cv.notify()

    def _work(self) -> None:
        buf = np.empty(READ_BYTES, dtype=np.uint8)
        mv = memoryview(buf)
        fds: dict[str, int] = {}
        try:
            while not self._stop.is_set():
                job = self._jobs.get()
                if job is None:
                    return
                path, start, end = job
                with self._cv:  # wait while too far ahead of the engine
                    self._cv.wait_for(lambda: self._stop.is_set() or self._read - self._used < self._budget)
                    self._read += end - start
                try:
                    fd = fds.get(path)
                    if fd is None:
                        fd = fds[path] = os.open(path, os.O_RDONLY)
                    off = start
                    while off < end and not self._stop.is_set():
                        n = os.preadv(fd, [mv[: min(READ_BYTES, end - off)]], off)
                        if n <= 0:
                            break
                        off += n
                except OSError:
                    pass  # only a hint: the engine's own read reports real errors
        finally:
            for fd in fds.values():
                os.close(fd)

    def close(self) -> None:
        with self._cv:
            self._stop.set()
            self._cv.notify()
        self._jobs.put(None)
        self._thread.join()
