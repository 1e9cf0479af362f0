"""Deterministic Temporal workflows. Inputs, outputs and queue names live in `shared.py`."""
