"""Benchmarks of conduit-async against a raw aiohttp loop and an httpx loop.

Run ``python -m benchmarks`` (a few minutes) or ``python -m benchmarks --quick`` (CI,
under a minute and a half). The fake Conduit server runs in a separate process, so the
client under test never shares an event loop (or a CPU's time slice) with it.

Modules, by what they measure:

- ``bulk``: companies created per second (SDK ``provision`` vs aiohttp vs httpx)
- ``overhead``: latency of one company-scoped call (SDK vs aiohttp, same token)
- ``broker``: token cache hits, and a cold fill of the cache
- ``expiry``: latency while company tokens expire under steady traffic
- ``memory``: RSS while provisioning a stream of rows, bytes per cached token

and the plumbing: ``server`` (the fake server process), ``sizes`` (quick and full),
``stats`` (timing and percentiles), ``report`` (targets, table, JSON, machine load).
``python -m benchmarks.profiling`` profiles the SDK side of a benchmark.
"""
