"""Modbus RTU and TCP: a pure codec, data-file profiles, a read planner and thin clients."""
