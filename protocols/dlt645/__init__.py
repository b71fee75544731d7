"""DL/T 645-2007: a pure codec, a data-identifier table and a thin async client."""
