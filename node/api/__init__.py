"""The node's gRPC face: the server, its services, the interceptors that check who
calls (mTLS identity, role policy), the one map from errors to status codes, and
the client a node uses to call its peers.

It reaches into every other room (the control plane for the queue, the agent for
this node's runs); nothing below imports it."""
