"""MQTT payloads and topics: pure validation and encoding, no client code."""
