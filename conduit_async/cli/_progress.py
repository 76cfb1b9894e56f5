"""What a person sees during and after a batch: a progress bar (or periodic lines), a summary.

A bar with rate and ETA on a terminal; on a pipe or a CI log a bar would be
noise, so a plain line every few seconds instead, and a last one at the end;
nothing with --quiet. Everything goes to stderr so that stdout stays clean for
`--json` or `--out -`.

Progress is the rows finished in this run: rows that `--resume` skips as done
in an earlier run are left out of the count, the total, the rate and the ETA.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, Protocol, TextIO

import attrs
from tqdm import tqdm

from ..provision._types import OUTCOMES

__all__ = ["Progress", "Tally", "counted", "make_progress"]

#: Failures listed in the summary; the rest are counted (and are in the results file).
MAX_LISTED = 20
#: Seconds between two status lines on a pipe.
LINE_INTERVAL = 5.0


def counted(count: int, noun: str) -> str:
    """`1 row`, `2 rows`, `1,000 rows`: every count a person reads goes through here."""
    return f"{count:,} {noun}" if count == 1 else f"{count:,} {noun}s"


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
        """Stop the clock (the first call counts)."""
        if self.finished is None:
            self.finished = time.monotonic()

    def summary(self, what: str) -> list[str]:
        """The human summary, one string per line."""
        rows = counted(self.done, "row")
        lines = [f"{what}: {rows} in {self.elapsed:.1f} s ({self.rate:,.0f} rows/s)"]
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
        """Show `tally`'s progress (called when a row finishes or is skipped)."""

    def message(self, text: str) -> None:
        """Print a line without garbling the display."""

    def close(self, tally: Tally | None, *, complete: bool = False) -> None:
        """Show the end. `complete` (every row was read) makes the total the rows done,
        so that the display ends at 100 % even where the estimate was off. No `tally`:
        an error ended the batch, and its message is all that matters now."""


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
        if tally.failed != self._failed:
            self._failed = tally.failed
            self._bar.set_postfix_str(f"failed {tally.failed:,}", refresh=False)
        if tally.done != self._bar.n:
            self._bar.update(tally.done - self._bar.n)

    def message(self, text: str) -> None:
        self._bar.write(text, file=self._bar.fp)

    def close(self, tally: Tally | None, *, complete: bool = False) -> None:
        if tally is not None:
            self.advance(tally)
        if complete or (self._bar.total is not None and self._bar.n > self._bar.total):
            self._bar.total = self._bar.n
        self._bar.refresh()
        self._bar.close()


class _Lines:
    """A plain status line at most every `interval` seconds, and a last one at the end."""

    def __init__(
        self,
        total: int | None,
        label: str,
        stream: TextIO,
        interval: float,
        clock: Callable[[], float],
    ) -> None:
        self._total = total
        self._label = label
        self._stream = stream
        self._interval = interval
        self._clock = clock
        self._next = clock() + interval

    def advance(self, tally: Tally) -> None:
        now = self._clock()
        if now < self._next:
            return
        self._next = now + self._interval
        self.message(self._line(tally, self._total))

    def _line(self, tally: Tally, total: int | None) -> str:
        done = tally.done
        text = f"{self._label}: "
        if total is not None:
            total = max(total, done)  # the estimate was short: never more than 100 %
            percent = 100 * done / total if total else 100.0
            text += f"{done:,}/{counted(total, 'row')} ({percent:.0f}%)"
        else:
            text += counted(done, "row")
        rate = tally.rate
        text += f", {rate:,.0f} rows/s"
        if total is not None and rate > 0 and total > done:
            text += f", ETA {_duration((total - done) / rate)}"
        if tally.failed:
            text += f"; {tally.failed:,} failed"
        return text

    def message(self, text: str) -> None:
        print(text, file=self._stream, flush=True)

    def close(self, tally: Tally | None, *, complete: bool = False) -> None:
        if tally is not None:
            self.message(self._line(tally, tally.done if complete else self._total))


class _Silent:
    """--quiet: messages only (or nothing at all, for a machine reading stderr)."""

    def __init__(self, stream: TextIO | None) -> None:
        self._stream = stream

    def advance(self, tally: Tally) -> None:
        """Nothing to show."""

    def message(self, text: str) -> None:
        if self._stream is not None:
            print(text, file=self._stream, flush=True)

    def close(self, tally: Tally | None, *, complete: bool = False) -> None:
        """Nothing to show: the summary says how it ended."""


def make_progress(
    total: int | None,
    label: str,
    *,
    quiet: bool,
    machine: bool = False,
    stream: TextIO | None = None,
    interval: float = LINE_INTERVAL,
    clock: Callable[[], float] = time.monotonic,
) -> Progress:
    """The right display for where stderr goes.

    `total` is the rows this run is expected to do (None: unknown); on a pipe,
    a line is printed at most every `interval` seconds of `clock`. `machine`
    (`--json`) keeps stderr free of status lines and messages unless a person
    watches it on a terminal, so that an error there is the only thing in it.
    """
    stream = sys.stderr if stream is None else stream
    tty = stream.isatty()
    if quiet or (machine and not tty):
        return _Silent(None if machine and not tty else stream)
    if tty:
        return _Bar(total, label, stream)
    return _Lines(total, label, stream, interval, clock)


def _duration(seconds: float) -> str:
    seconds = int(seconds + 0.5)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
