"""Flags: missed reads, meter faults, wiring, theft and transformer-area line loss."""
