"""Benchmarks of conduit-async against hand-written aiohttp (and httpx) clients.

Run ``python -m benchmarks`` (about ten minutes) or ``python -m benchmarks --quick`` (CI,
a couple of minutes). The fake Conduit server runs in a separate process, so the
client under test never shares an event loop (or a CPU's time slice) with it.

Modules, by what they measure:

- ``instructions``: client instructions per request under callgrind, SDK / raw
- ``cpu``: client CPU per request (``process_time``), the same pairs, alternating rounds
- ``bulk``: companies created per second (SDK ``provision`` vs raw aiohttp vs httpx)
- ``overhead``: latency and client CPU of one company-scoped call (SDK vs aiohttp)
- ``broker``: token cache hits, and a cold fill of the cache
- ``interactive``: web-style calls while 1 % of them get 429 (before/after ``max_wait``)
- ``expiry``: latency while company tokens expire under steady traffic
- ``memory``: RSS while provisioning a stream of rows, bytes per cached token

and the plumbing: ``raw`` (the hand-written baselines), ``contenders`` (the SDK/raw
pairs, as set-up plus phases), ``callgrind`` (reading callgrind.out files), ``server``
(the fake server process), ``sizes`` (quick and full), ``stats`` (timing and
percentiles), ``report`` (targets, table, JSON, machine load).
``python -m benchmarks.profiling`` profiles the SDK side of a benchmark (pyinstrument,
cProfile, or callgrind instructions per function).
"""
