"""The demo's moving parts: a tiny HTTP workload (app), a minimal HTTP/1.1
client and server codec (http), and real Envoy process management (envoy).

Used by `legation demo` and by the end-to-end tests. `app` and `http` use the
standard library only, so a workload can run anywhere Python does.

`legation demo` itself: `runner` (composition and lifecycle), `plan` (what
to run, from the mesh), `ports` (are they free), `traffic` (load and tally),
`convergence` (who ACKed what), `view` (the terminal). `controlplane` runs
`legation serve` as a child process, for the end-to-end tests.
"""
