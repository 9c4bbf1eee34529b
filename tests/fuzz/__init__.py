"""Fuzzers that run against real ``murmur node`` processes (``make fuzz``)."""
