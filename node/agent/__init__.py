"""The agent: this node's own work. The run executor starts and stops the runs the
leader hands it, in a runtime (process or Docker), on GPUs the probe found, with
datasets it scanned; it knows nothing of Raft or the queue (the control plane calls
it, never the other way)."""
