"""The bundled demo: a Rails-like legacy app, its partial replacement, and a traffic generator.

Entry points: `runner.run_demo()` (also `python -m strangler.demo.runner`) runs everything
behind a real `strangler run`; `legacy_app.create_legacy_app()` and `new_app.create_new_app()`
are uvicorn factories; `traffic.generate_traffic()` (also `python -m strangler.demo.traffic`)
sends the traffic.

Nothing is re-exported here on purpose: importing the submodules from this `__init__` would
make `python -m strangler.demo.traffic` load that module twice (runpy warns about it). Importing
this package starts nothing.
"""
