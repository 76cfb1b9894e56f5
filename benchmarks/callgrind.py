"""Reading callgrind.out files: instructions per function, self and inclusive.

With Python 3.12+ started as ``python -X perf``, every Python function runs through a
trampoline of its own, which callgrind sees as a function at an address without a
symbol; the interpreter writes each trampoline's address and Python name to
``/tmp/perf-PID.map``. `function_costs` puts those names back, so a profile names
``Session.request`` rather than ``_PyEval_EvalFrameDefault``. Run with `GLUE` skipped
(``--fn-skip``), the interpreter's calling machinery is charged to the Python function
that made the call, and a Python function's self cost is the work of its own bytecode.
"""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["GLUE", "function_costs", "perf_map", "pid_of", "short_name"]

#: The interpreter's own machinery (CPython 3.12), skipped (``--fn-skip``) so that its
#: cost lands on the function that used it: the calling and resuming of Python
#: functions, and the C API that carries out their bytecode (attribute and dict
#: lookups, allocation, frames, reference counting). Extension modules (``_json``,
#: ``_asyncio``, aiohttp's parser, multidict, yarl) and libc stay visible.
GLUE = (
    "py_trampoline_evaluator",
    "_Py*",
    "Py*",
    "method_vectorcall*",
    "cfunction_vectorcall*",
    "cfunction_call",
    "vectorcall_*",
    "slot_tp_*",
    "gen_send*",
    "gen_iternext",
    "context_run",
    "initialize_locals",
    "clear_thread_frame",
    "*dealloc",
    "__tls_get_addr",
)

_NAME = re.compile(r"^\((\d+)\)(?: (.*))?$")
_ADDRESS = re.compile(r"^0x[0-9a-fA-F]+$")
_RECURSION = re.compile(r"'\d+$")


def pid_of(callgrind_out: Path) -> int:
    with callgrind_out.open(encoding="utf-8", errors="replace") as lines:
        for line in lines:
            if line.startswith("pid:"):
                return int(line.split()[1])
    raise ValueError(f"{callgrind_out}: no pid line")


def perf_map(pid: int) -> dict[int, str]:
    """Trampoline address -> ``qualname:file`` from the interpreter's perf map (empty if
    the interpreter wrote none: before 3.12, or run without ``-X perf``)."""
    path = Path(f"/tmp/perf-{pid}.map")
    names: dict[int, str] = {}
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return names
    for line in text.splitlines():
        start, _size, name = line.split(" ", 2)
        names[int(start, 16)] = name.removeprefix("py::")
    return names


def short_name(name: str, roots: tuple[str, ...]) -> str:
    """``Session.request:/long/path/conduit_async/_session.py`` -> ``Session.request
    (conduit_async/_session.py)``; C functions are left as they are."""
    if ":" not in name:
        return name
    qualname, file = name.split(":", 1)
    for root in roots:
        if file.startswith(root):
            file = file[len(root) :].lstrip("/")
            break
    return f"{qualname} ({file})"


def function_costs(
    callgrind_out: Path, python_names: dict[int, str] | None = None
) -> dict[str, tuple[int, int]]:
    """``{function: (self, inclusive)}`` instructions, functions merged by name across
    files and recursion levels; trampoline addresses named from `python_names`."""
    python_names = python_names or {}
    names: dict[str, str] = {}
    exclusive: dict[str, int] = {}
    calls: dict[str, int] = {}

    def resolve(spec: str) -> str:
        match = _NAME.match(spec)
        if match is None:
            raw = spec
        else:
            ident, given = match.groups()
            if given is not None:
                names[ident] = given
            raw = names[ident]
        raw = _RECURSION.sub("", raw)
        if _ADDRESS.match(raw):
            return python_names.get(int(raw, 16), raw)
        return raw

    current = ""
    callee: str | None = None
    pending_call = False
    with callgrind_out.open(encoding="utf-8", errors="replace") as lines:
        for line in lines:
            if not line or line[0] in "#\n":
                continue
            head = line[0]
            if head.isdigit() or head in "+-*":
                parts = line.split()
                cost = int(parts[1]) if len(parts) > 1 else 0
                if pending_call:
                    pending_call = False
                    if callee != current:  # a recursive call is already in the cost
                        calls[current] = calls.get(current, 0) + cost
                else:
                    exclusive[current] = exclusive.get(current, 0) + cost
            elif line.startswith("fn="):
                current = resolve(line[3:].strip())
            elif line.startswith("cfn="):
                callee = resolve(line[4:].strip())
            elif line.startswith("calls="):
                pending_call = True
    everything = exclusive.keys() | calls.keys()
    return {
        name: (exclusive.get(name, 0), exclusive.get(name, 0) + calls.get(name, 0))
        for name in everything
    }
