"""Control plane: the state store and its adapters, the watcher that follows it, the analyzer
that judges canaries, and the service every stage change goes through. It reads and writes
state; it imports neither the proxy nor the shadow runner (their snapshot is runtime/'s)."""
