"""Benchmarks: how fast a change reaches the fleet, measured and written to a file.

Run with `make bench` (`python -m benchmarks.run --output bench-results.json`).
Nothing here asserts a wall-clock threshold: every scenario is bounded in
time and count, talks to loopback addresses only, and reports what it
measured (JSON for machines, a table for people). See README.md.

- meshgen.py      synthetic meshes as YAML text, loaded through the real converters
- translation.py  scenario 1: translation, serialization and sharing cost
- fanout.py       scenario 2: one change to 1,000 ADS streams (server process)
- adsclient.py    scenario 2: the lightweight ADS clients (client processes)
- fanout_report.py scenario 2: records -> latencies, bytes, ratios; its tables
- envoys.py       scenario 3: file change to ACK with real Envoy sidecars
- stats.py        percentiles, process CPU and memory, the table printer
- run.py          the command line
"""
