"""meter-collector: what to read, when, and what it means."""

__version__ = "0.1.0"
