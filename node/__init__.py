"""The Murmur daemon (`murmur node`): services, identity, GPU probe, and later gossip,
election and runtimes. Users do not import this package; they use ``murmur``."""
