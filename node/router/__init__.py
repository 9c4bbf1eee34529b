"""The node's OpenAI-compatible router: requests for a model, sent to a ready replica
of a service anywhere in the cluster (``routes.py`` chooses, ``proxy.py`` carries)."""
