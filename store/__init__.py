"""PostgreSQL access: the pool, migrations and one module of query functions per table.

Query functions take a connection first and return dataclasses (or None when nothing matched),
so handlers never write SQL and the caller decides the transaction boundaries.
"""
