"""The demo's stage log: one progress line per stage (printed by :class:`ssl_cyto.formats.progress.Stages`,
the one stage reporter), its wall time, and the table in the report."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ssl_cyto.formats.errors import SslCytoError
from ssl_cyto.formats.progress import Stages


class DemoError(SslCytoError):
    """A demo stage failed on its input; the message names the stage."""


@dataclass
class StageLog:
    """Wall time and outputs of each stage, printed as it goes and written into the report."""

    total_stages: int
    rows: list[dict[str, Any]] = field(default_factory=list)
    t_start: float = field(default_factory=time.monotonic)
    say: Stages = field(default_factory=lambda: Stages("demo"))

    def run(self, name: str, fn: Callable[[], Any], detail: str = "") -> Any:
        """Run one stage, print its start and end with the elapsed time, and record its wall time.

        An expected error (:class:`SslCytoError`) becomes a :class:`DemoError` naming the stage;
        anything else is a bug and propagates with its traceback.
        """
        i = len(self.rows) + 1
        self.say(f"[{i}/{self.total_stages}] {name} {detail}".rstrip())
        t0 = time.monotonic()
        try:
            result = fn()
        except SslCytoError as exc:
            raise DemoError(f"stage '{name}' failed: {exc}") from exc
        dt = time.monotonic() - t0
        self.rows.append({"stage": name, "seconds": round(dt, 1), "detail": detail})
        self.say(f"[{i}/{self.total_stages}] {name} done in {dt:.1f}s")
        return result

    def skip(self, name: str, detail: str) -> None:
        """Record a stage that did not need to run."""
        self.rows.append({"stage": name, "seconds": 0.0, "detail": detail})

    def elapsed(self) -> float:
        """Seconds since the demo started."""
        return time.monotonic() - self.t_start
