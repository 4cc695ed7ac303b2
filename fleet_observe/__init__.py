"""Observability of a running fabric: `status`, `top`, `doctor`, `trace` and the dashboard.

Pure logic (no network, no clock except through arguments):
    snapshot.py   FabricSnapshot, fed by beacons, states, router presences and task events
    render.py     text tables of a snapshot, one-line task events
    checks.py     CheckResult and the doctor's verdicts on gathered facts

I/O seams (thin, each driving the pure parts):
    watch.py      FabricWatcher: one MQTT subscription set feeding a FabricSnapshot
    probes.py     the doctor's measurements (TCP, TLS, MQTT login, ACL round trips, beacons)
    web.py        the dashboard's HTTP server with server-sent events
"""
