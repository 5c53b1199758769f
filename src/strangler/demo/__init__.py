"""The bundled demo: a Rails-like legacy app, its partial replacement, and a traffic generator.

Entry points: `runner.run_demo()` (also `python -m strangler.demo.runner`) runs everything
behind a real `strangler run`; `legacy_app.create_legacy_app()` and `new_app.create_new_app()`
are uvicorn factories; `traffic.generate_traffic()` (also `python -m strangler.demo.traffic`)
sends the traffic; the new app's chaos switch (`/_demo/chaos` on its own port, or
`STRANGLER_DEMO_NEW_CHAOS`) breaks the canary route on purpose. `cookie_store` keeps the legacy
app's session in a real Rails cookie (the gateway's Rails bridge reads it); `identity_verifier`
is how the new app checks the identity token the gateway gives it instead.

Nothing is re-exported here on purpose: importing the submodules from this `__init__` would
make `python -m strangler.demo.traffic` load that module twice (runpy warns about it). Importing
this package starts nothing.
"""
