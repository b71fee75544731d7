"""How bytes become values: codecs and thin transports, no scheduling or storage."""
