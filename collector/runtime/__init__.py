"""The long-running processes: `collector run` (the daemon) and `collector demo`.

The composition root: it wires acquisition, flags and field tools into one process.
Nothing but the CLI imports it.
"""
