"""Vaporform: the backend of an AI-powered, collaborative web IDE."""

__version__ = "0.1.0"
