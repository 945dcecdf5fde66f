"""Overlap I/O with work: one worker thread reads ahead, another writes behind.

Decoding, x264 and most numpy/OpenCV work release the GIL, so one worker thread that
decodes the next chunk (or encodes the last one) while the caller works on this one
keeps both cores of a small machine busy.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, Iterator

_END = object()


def prefetch(chunks: Iterable) -> Iterator:
    """Yield the items of ``chunks`` in order while a worker thread produces the next one."""
    items = iter(chunks)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="prefetch") as pool:
        upcoming = pool.submit(next, items, _END)
        while (item := upcoming.result()) is not _END:
            upcoming = pool.submit(next, items, _END)
            yield item


class Behind:
    """Call ``fn(item)`` in a worker thread, at most one call behind the caller.

    >>> with VideoWriter(path, fps) as writer, Behind(writer.write) as write:
    ...     for chunk in chunks: write(edit(chunk))   # encodes chunk k while chunk k+1 is edited

    The caller must not change ``item`` after passing it: ``fn`` reads it later, in the
    worker. An error in a call is raised by the next call or on leaving the ``with`` block.
    """

    def __init__(self, fn: Callable):
        self._fn = fn
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="behind")
        self._pending = None

    def __call__(self, item) -> None:
        self.wait()
        self._pending = self._pool.submit(self._fn, item)

    def wait(self) -> None:
        """Block until the last call finished; raise its error."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def __enter__(self) -> Behind:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self.wait()
            elif self._pending is not None:
                self._pending.exception()  # let it finish; the caller's error wins
        finally:
            self._pool.shutdown(wait=True)
