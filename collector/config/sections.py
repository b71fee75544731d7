"""How collector.toml is read: typed access to one table at a time, and errors that name
the file, the full key path and an example of the fix."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from datetime import date, timedelta
from typing import Any

from collector.errors import ConfigError

DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|min|h|d)\s*$")
_UNITS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}
OBIS = re.compile(r"^\d{1,3}-\d{1,3}:\d{1,3}\.\d{1,3}\.\d{1,3}$")
HHMM = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")
HOSTPORT = re.compile(r"^[A-Za-z0-9_.\-\[\]:]+:\d{1,5}$")


def parse_duration(text: Any) -> timedelta | None:
    if isinstance(text, int) and not isinstance(text, bool) and text > 0:
        return timedelta(seconds=text)
    if isinstance(text, str) and (m := DURATION.match(text)):
        seconds = float(m.group(1)) * _UNITS[m.group(2)]
        return timedelta(seconds=seconds) if seconds > 0 else None
    return None


class Section:
    """Typed access to one TOML table that reports mistakes with the full key path."""

    def __init__(self, file: str, path: str, table: Any, known: dict[str, str]) -> None:
        self.file = file
        self.path = path
        if not isinstance(table, dict):
            raise ConfigError(file, path, f"must be a table, got {type(table).__name__}")
        self.table = table
        for key in table:
            if key not in known:
                close = difflib.get_close_matches(key, list(known), n=1)
                hint = f"; did you mean '{close[0]}'?" if close else ""
                example = known[close[0]] if close else ""
                raise ConfigError(file, f"{path}.{key}", f"unknown key{hint}", example)
        self.known = known

    def error(self, key: str, problem: str) -> ConfigError:
        return ConfigError(self.file, f"{self.path}.{key}", problem, self.known.get(key, ""))

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
        if key not in self.table:
            if default is REQUIRED:
                raise self.error(key, "is required")
            return default
        value = self.table[key]
        if isinstance(value, bool) and kind is not bool and not (
            isinstance(kind, tuple) and bool in kind
        ):
            raise self.error(key, f"must be {_kind_name(kind)}, got a boolean")
        if not isinstance(value, kind):
            raise self.error(key, f"must be {_kind_name(kind)}, got {type(value).__name__}")
        return value

    def numbers(self, defaults: Any, names: Iterable[str], *, zero_ok: bool,
                exempt: tuple[str, ...] = ()) -> dict[str, Any]:
        """Each numeric setting, typed like its default: refused below zero (at zero
        too unless `zero_ok`), except `exempt`, which may take any value."""
        values: dict[str, Any] = {}
        for name in names:
            default = getattr(defaults, name)
            kind: type | tuple[type, ...] = int if isinstance(default, int) else (int, float)
            value = self.get(name, kind, default)
            if name not in exempt and (value < 0 if zero_ok else value <= 0):
                raise self.error(name, "must not be negative" if zero_ok else "must be positive")
            values[name] = type(default)(value)
        return values

    def dates(self, key: str) -> tuple[date, ...]:
        out = []
        for i, text in enumerate(self.get(key, list, [])):
            try:
                out.append(date.fromisoformat(text))
            except (TypeError, ValueError):
                raise self.error(key, f"item {i} ({text!r}) is not a date YYYY-MM-DD") from None
        return tuple(out)


REQUIRED = object()


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false",
             list: "a list", dict: "a table"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def array_of(top: Section, key: str) -> list[Any]:
    value = top.table.get(key, [])
    if not isinstance(value, list):
        raise top.error(key, f"must be an array of tables, written [[{key}]]")
    return value


def unique_names(file: str, what: str, names: list[str]) -> None:
    seen: set[str] = set()
    for i, name in enumerate(names):
        if name in seen:
            key = "id" if what == "meter" else "name"
            raise ConfigError(file, f"{what}[{i}].{key}", f"{name!r} is used twice")
        seen.add(name)
