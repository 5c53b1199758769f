"""The composition root: what runs a gateway process. The supervisor forks workers; a worker
wires the proxy, the shadow runner, the control store's watcher and analyzer, the metrics,
the access log and the tracer around one event loop; snapshots are built here from the config.
"""
