"""Phasor arithmetic for a three-phase meter's wiring: shared by the head-end's wiring
flag and the technician's `collector wiring`, so both name a fault the same way."""
