"""The daemon's gRPC plumbing: who is calling, what they may do, and how errors travel."""
