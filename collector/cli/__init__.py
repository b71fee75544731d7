"""The `collector` command: one module per command group over one shared context.

The top floor: it only calls into the rooms below and imports nothing above itself.
"""
