"""A progress bar on stderr that appears only for work that lasts more than a couple of seconds."""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


class DelayedProgress:
    """Callable `progress(done, total)`; draws a bar once `delay_s` have passed, on stderr, and clears it at exit."""

    def __init__(self, description: str, delay_s: float = 2.0, enabled: bool = True):
        self.description = description
        self.delay_s = delay_s
        self.enabled = enabled
        self._start = time.perf_counter()
        self._bar: Progress | None = None
        self._task = None

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self._bar is None:
            if time.perf_counter() - self._start < self.delay_s:
                return
            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self._bar.start()
            self._task = self._bar.add_task(self.description, total=total)
        self._bar.update(self._task, completed=done, total=total)

    def __enter__(self) -> DelayedProgress:
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.stop()
