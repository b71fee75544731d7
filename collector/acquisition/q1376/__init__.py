"""The master station's front end (前置机) for Q/GDW 1376.1 concentrators.

`link` is one terminal's TCP connection (login, heartbeat, one request in flight),
`frontend` the server that accepts them and knows who is online, `translate` turns
the terminal's data units into readings and events, and `service` reads every online
terminal on schedule, catches up the days a terminal was away, and writes to the store.
"""
