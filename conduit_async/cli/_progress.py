"""What a person sees during and after a batch: a progress bar (or periodic lines), a summary.

A bar with rate and ETA on a terminal; on a pipe or a CI log a bar would be
noise, so plain lines every couple of seconds instead; nothing with --quiet.
Everything goes to stderr so that stdout stays clean for `--json` or
`--out -`.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Protocol, TextIO

import attrs
from tqdm import tqdm

from ..provision._types import OUTCOMES

__all__ = ["Progress", "Tally", "make_progress"]

#: Failures listed in the summary; the rest are counted (and are in the results file).
MAX_LISTED = 20


class _Result(Protocol):
    @property
    def outcome(self) -> str: ...

    @property
    def key(self) -> str: ...

    @property
    def line(self) -> int | None: ...

    @property
    def error(self) -> BaseException | None: ...


@attrs.define
class Tally:
    """Counts per outcome, rows skipped by `--resume`, and the first failures."""

    counts: dict[str, int] = attrs.field(factory=lambda: dict.fromkeys(OUTCOMES, 0))
    skipped: int = 0
    failures: list[tuple[int | None, str, str]] = attrs.field(factory=list)
    started: float = attrs.field(factory=time.monotonic)
    finished: float | None = None

    def add(self, result: _Result) -> None:
        self.counts[result.outcome] += 1
        if result.outcome == "failed" and len(self.failures) < MAX_LISTED:
            self.failures.append((result.line, result.key, str(result.error)))

    @property
    def done(self) -> int:
        return sum(self.counts.values())

    @property
    def failed(self) -> int:
        return self.counts["failed"]

    @property
    def elapsed(self) -> float:
        end = self.finished if self.finished is not None else time.monotonic()
        return end - self.started

    @property
    def rate(self) -> float:
        return self.done / self.elapsed if self.elapsed > 0 else 0.0

    def finish(self) -> None:
        self.finished = time.monotonic()

    def summary(self, what: str) -> list[str]:
        """The human summary, one string per line."""
        lines = [
            f"{what}: {self.done:,} rows in {self.elapsed:.1f} s ({self.rate:,.0f} rows/s)",
        ]
        width = max(len(f"{n:,}") for n in [*self.counts.values(), self.skipped])
        for outcome in OUTCOMES:
            lines.append(f"  {outcome:<10} {self.counts[outcome]:>{width},}")
        if self.skipped:
            lines.append(f"  {'skipped':<10} {self.skipped:>{width},} (done in an earlier run)")
        if self.failures:
            lines.append("Failures:")
            for line, key, reason in self.failures:
                where = f"line {line}" if line is not None else "row"
                label = f" ({key})" if key else ""
                lines.append(f"  {where}{label}: {reason}")
            more = self.failed - len(self.failures)
            if more > 0:
                lines.append(f"  ... and {more:,} more (see the results file)")
        return lines

    def to_json(self) -> dict[str, Any]:
        return {
            "rows": self.done,
            "outcomes": dict(self.counts),
            "skipped": self.skipped,
            "elapsed_s": round(self.elapsed, 3),
            "rows_per_s": round(self.rate, 1),
            "failures": [
                {"line": line, "key": key, "reason": reason} for line, key, reason in self.failures
            ],
            "failures_not_listed": max(0, self.failed - len(self.failures)),
        }


class Progress(Protocol):
    def advance(self, tally: Tally) -> None:
        """One more row finished (or skipped)."""

    def message(self, text: str) -> None:
        """Print a line without garbling the display."""

    def close(self) -> None: ...


class _Bar:
    """tqdm on a terminal: rate and ETA, failures in the postfix."""

    def __init__(self, total: int | None, label: str, stream: TextIO) -> None:
        self._bar = tqdm(
            total=total,
            desc=label,
            unit="row",
            file=stream,
            dynamic_ncols=True,
            smoothing=0.05,
            mininterval=0.2,
        )
        self._failed = 0

    def advance(self, tally: Tally) -> None:
        self._bar.update(1)
        if tally.failed != self._failed:
            self._failed = tally.failed
            self._bar.set_postfix_str(f"failed {tally.failed:,}", refresh=False)

    def message(self, text: str) -> None:
        self._bar.write(text, file=self._bar.fp)

    def close(self) -> None:
        self._bar.close()


class _Lines:
    """Plain status lines every `interval` seconds, for logs and pipes."""

    def __init__(self, total: int | None, label: str, stream: TextIO, interval: float) -> None:
        self._total = total
        self._label = label
        self._stream = stream
        self._interval = interval
        self._next = time.monotonic() + interval

    def advance(self, tally: Tally) -> None:
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + self._interval
        seen = tally.done + tally.skipped
        text = f"{self._label}: {seen:,}"
        rate = tally.rate
        if self._total:
            text += f"/{self._total:,} rows ({100 * seen / self._total:.0f}%)"
        else:
            text += " rows"
        text += f", {rate:,.0f} rows/s"
        if self._total and rate > 0 and self._total > seen:
            text += f", ETA {_duration((self._total - seen) / rate)}"
        if tally.failed:
            text += f"; {tally.failed:,} failed"
        self.message(text)

    def message(self, text: str) -> None:
        print(text, file=self._stream, flush=True)

    def close(self) -> None:
        """Nothing to tear down: every line was complete when printed."""


class _Silent:
    """--quiet: messages only."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def advance(self, tally: Tally) -> None:
        """Nothing to show."""

    def message(self, text: str) -> None:
        print(text, file=self._stream, flush=True)

    def close(self) -> None:
        """Nothing to tear down."""


def make_progress(
    total: int | None,
    label: str,
    *,
    quiet: bool,
    stream: TextIO | None = None,
    interval: float = 2.0,
) -> Progress:
    """The right display for where stderr goes."""
    stream = sys.stderr if stream is None else stream
    if quiet:
        return _Silent(stream)
    if stream.isatty():
        return _Bar(total, label, stream)
    return _Lines(total, label, stream, interval)


def _duration(seconds: float) -> str:
    seconds = int(seconds + 0.5)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
