"""Test support: real node processes, real CA, real TLS — no mocks."""
