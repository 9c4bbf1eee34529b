"""The node's OpenAI-compatible router: requests for a model, sent to a ready replica
of a service anywhere in the cluster (``routes.py`` chooses, ``proxy.py`` carries).
Around them: ``listener.py`` and ``tls.py`` accept connections, ``intake.py`` takes
bodies within their limits, ``errors.py`` words every refusal, ``traffic.py`` counts
what each service was sent, and ``keys.py`` checks API keys."""
