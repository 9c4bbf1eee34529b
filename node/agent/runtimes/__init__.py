"""Job runtimes (process, docker) behind one interface, :mod:`murmur.node.agent.runtimes.base`.

Kept free of imports: the per-run supervisor imports this package on every
run start, and must stay light (no grpc, no asyncio machinery).
"""
