"""IEC 62056-21 (formerly IEC 1107): the optical probe's protocol, mode C."""
