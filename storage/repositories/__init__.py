"""SQL for each table, one module per table.

Functions take an open connection and run their statements on it; they never begin or
commit transactions. ``storage.store.Store`` owns the connection, serializes access,
and wraps every write in a transaction.
"""
