"""The field technician's tools: read one meter, scan a bus, check and set its clock.

Imports acquisition and below; the daemon borrows its clock check and time sync.
"""
