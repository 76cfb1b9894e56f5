"""Targets, the terminal table and the JSON document of a benchmark run."""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

import attrs

__all__ = ["Metric", "Report", "Target", "UsageMeter", "cpu_speed", "machine", "write_json"]

Op = Literal[">=", "<=", "=="]

_FORMATS = {
    "companies/s": "{:,.0f} /s",
    "/s": "{:,.0f} /s",
    "ms": "{:,.1f} ms",
    "x": "{:.2f} x",
    "%": "{:+.1f} %",
    "µs": "{:,.0f} µs",
    "ns": "{:,.0f} ns",
    "s": "{:.2f} s",
    "MB": "{:.1f} MB",
    "B": "{:,.0f} B",
    "": "{:,.0f}",
    "faults": "{:.2f}",
}


def _fmt(value: float | None, unit: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return _FORMATS.get(unit, "{:g} " + unit).format(value)


@attrs.frozen
class Target:
    op: Op
    threshold: float

    def met(self, value: float) -> bool:
        if self.op == ">=":
            return value >= self.threshold
        if self.op == "<=":
            return value <= self.threshold
        return value == self.threshold


@attrs.frozen
class Metric:
    key: str
    label: str
    value: float | None
    unit: str
    target: Target | None = None

    @property
    def met(self) -> bool | None:
        """None when there is no target or no value to judge."""
        if self.target is None or self.value is None or math.isnan(self.value):
            return None
        return self.target.met(self.value)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"label": self.label, "value": self.value, "unit": self.unit}
        if self.target is not None:
            out["target"] = f"{self.target.op} {self.target.threshold:g}"
            out["met"] = self.met
        return out


@attrs.define
class Report:
    """The headline numbers of a run, in the order they were measured."""

    metrics: list[Metric] = attrs.Factory(list)

    def add(
        self,
        key: str,
        label: str,
        value: float | None,
        unit: str,
        target: Target | None = None,
    ) -> None:
        self.metrics.append(Metric(key, label, value, unit, target))

    @property
    def missed(self) -> list[Metric]:
        return [m for m in self.metrics if m.met is False]

    def table(self) -> str:
        rows = [("metric", "value", "target", "met")]
        for m in self.metrics:
            target = "" if m.target is None else f"{m.target.op} {_fmt(m.target.threshold, m.unit)}"
            met = {None: "", True: "yes", False: "NO"}[m.met]
            rows.append((m.label, _fmt(m.value, m.unit), target, met))
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        lines = []
        for n, row in enumerate(rows):
            lines.append(
                "  ".join(
                    cell.ljust(w) if i in (0, 2) else cell.rjust(w)
                    for i, (cell, w) in enumerate(zip(row, widths, strict=True))
                ).rstrip()
            )
            if n == 0:
                lines.append("  ".join("-" * w for w in widths))
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return {m.key: m.as_dict() for m in self.metrics}


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def machine() -> dict[str, Any]:
    """Where the numbers come from: hardware, interpreter, library versions, time."""
    import aiohttp
    import httpx

    import conduit_async

    try:
        usable: int | None = len(os.sched_getaffinity(0))
    except AttributeError:  # not on every platform
        usable = os.cpu_count()
    return {
        "cpu_count": os.cpu_count(),
        "cpus_usable": usable,
        "cpu_model": _cpu_model(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "aiohttp": aiohttp.__version__,
        "httpx": httpx.__version__,
        "httpcore": _version("httpcore"),
        "anyio": _version("anyio"),
        # httpcore tries `import sniffio` on every lock it makes; without it each
        # attempt is a failed import, which slows the httpx contender.
        "sniffio_installed": _version("sniffio") is not None,
        "conduit_async": conduit_async.__version__,
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _machine_ticks() -> tuple[int, int] | None:
    """(busy, steal) clock ticks of the whole machine so far, from /proc/stat."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            fields = [int(x) for x in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return user + nice + system + irq + softirq, steal


def _own_cpu() -> float:
    """CPU seconds of this process and of its children that have been waited for."""
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def cpu_speed() -> float:
    """Microseconds for a fixed piece of pure Python (best of 5): taken at the start and
    the end of a run, it shows whether the machine itself was slower than usual."""
    import timeit

    number = 2000
    return min(timeit.repeat("sum(range(1000))", number=number, repeat=5)) / number * 1e6


@attrs.define
class UsageMeter:
    """How much CPU other programs took while the benchmark ran: numbers measured on a
    busy machine are not comparable, and the JSON says so (Linux only)."""

    _wall: float = attrs.field(init=False, factory=time.perf_counter)
    _ticks: tuple[int, int] | None = attrs.field(init=False, factory=_machine_ticks)
    _own: float = attrs.field(init=False, factory=_own_cpu)
    _load: tuple[float, float, float] | None = attrs.field(init=False)
    _speed: float = attrs.field(init=False, factory=cpu_speed)

    def __attrs_post_init__(self) -> None:
        self._load = os.getloadavg() if hasattr(os, "getloadavg") else None

    def noise(self, summary: dict[str, Any]) -> list[str]:
        """Reasons to distrust the numbers of a run, for the terminal."""
        reasons = []
        other, steal = summary.get("other_programs_share"), summary.get("steal_share")
        if other is not None and other > 0.05:
            reasons.append(
                f"other programs used {other:.0%} of the machine's CPU "
                f"({summary['other_programs_cpu_seconds']:.0f} CPU-seconds)"
            )
        if steal is not None and steal > 0.02:
            reasons.append(
                f"the hypervisor took {steal:.0%} of the CPU time (steal, "
                f"{summary['steal_seconds']:.0f} s): the host is busy"
            )
        return reasons

    def summary(self) -> dict[str, Any]:
        wall = time.perf_counter() - self._wall
        own = _own_cpu() - self._own
        out: dict[str, Any] = {
            "wall_seconds": wall,
            "benchmark_cpu_seconds": own,
            "load_average_at_start": self._load,
            "load_average_at_end": os.getloadavg() if hasattr(os, "getloadavg") else None,
            "cpu_speed_us_at_start": self._speed,
            "cpu_speed_us_at_end": cpu_speed(),
        }
        ticks = _machine_ticks()
        if ticks is not None and self._ticks is not None:
            hz = os.sysconf("SC_CLK_TCK")
            busy = (ticks[0] - self._ticks[0]) / hz
            cpus = os.cpu_count() or 1
            other = max(0.0, busy - own)
            out["machine_busy_cpu_seconds"] = busy
            out["other_programs_cpu_seconds"] = other
            out["other_programs_share"] = other / (wall * cpus)
            out["steal_seconds"] = (ticks[1] - self._ticks[1]) / hz
            out["steal_share"] = out["steal_seconds"] / (wall * cpus)
        return out


def write_json(path: Path, document: dict[str, Any]) -> None:
    """Write atomically: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(_finite(document), indent=2, allow_nan=False) + "\n")
    os.replace(tmp, path)


def _finite(value: Any) -> Any:
    """NaN and infinities (a figure that could not be measured) become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
