"""Exports for billing systems: validated interval data as NEM12 or CSV, streamed."""
