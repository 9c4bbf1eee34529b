"""A job as both sides see it: its states and the validation of its spec. The
control plane and the agent both import it; it imports neither."""
