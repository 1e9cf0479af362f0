"""Temporal activities: classes that receive their clients in `__init__`; the only I/O side."""
