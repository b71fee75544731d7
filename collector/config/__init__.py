"""Settings: collector.toml parsed and checked, and the flag thresholds it overrides.

Imports only model, protocols and collector.errors: every other room reads its settings
from here, so this room must not depend on any of them.
"""
