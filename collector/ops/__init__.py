"""Running the daemon in production: metrics, health endpoints, task supervision, logs.

May import the model, storage's interface and collector.errors; nothing here knows a
protocol. The acquisition services report into it; nothing in it calls them back.
"""
