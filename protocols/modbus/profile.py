"""Meter profiles: data files that map registers onto OBIS quantities.

A profile is TOML under protocols/modbus/profiles/ (or a directory the user names), so
a new meter model needs a file, not code. Errors name the file, the register and the
problem.
"""

from __future__ import annotations

import math
import struct
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from model.resolution import decimals_in
from protocols.errors import ProtocolError
from protocols.modbus.frames import FUNCTIONS, MAX_READ

TYPES = {  # words, struct format (big-endian bytes, words in order)
    "uint16": (1, ">H"), "int16": (1, ">h"),
    "uint32": (2, ">I"), "int32": (2, ">i"),
    "float32": (2, ">f"), "float64": (4, ">d"),
}
ORDERS = ("big", "little")


class ProfileError(ProtocolError):
    def __init__(self, file: str, where: str, problem: str) -> None:
        super().__init__(f"{file}: {where}: {problem}")
        self.file, self.where, self.problem = file, where, problem


@dataclass(frozen=True, slots=True)
class RegisterSpec:
    obis: str
    address: int
    function: str
    type: str
    unit: str
    scale: float = 1.0
    word_order: str = "big"
    byte_order: str = "big"

    @property
    def words(self) -> int:
        return TYPES[self.type][0]

    def decode(self, words: list[int]) -> float:
        ordered = words if self.word_order == "big" else list(reversed(words))
        raw = b"".join(
            w.to_bytes(2, "big") if self.byte_order == "big" else w.to_bytes(2, "little")
            for w in ordered
        )
        (value,) = struct.unpack(TYPES[self.type][1], raw)
        return float(value) * self.scale

    def decimals(self, value: float) -> int | None:
        """The resolution a decoded value has: an integer register's scale sets it (0.01
        gives two decimals); a float register carries what its shortest form shows, at
        its own precision (a float32's 230.1, not 230.10000610351562)."""
        if self.type.startswith("float"):
            if self.type == "float32":
                value = float(np.format_float_positional(np.float32(value), unique=True,
                                                         trim="-"))
            return decimals_in([value])
        exponent = -math.log10(abs(self.scale))
        return max(0, round(exponent)) if math.isclose(exponent, round(exponent)) else None

    def encode(self, value: float) -> list[int]:
        raw_value: float | int = value / self.scale
        if not self.type.startswith("float"):
            raw_value = round(raw_value)
        raw = struct.pack(TYPES[self.type][1], raw_value)
        words = [raw[i : i + 2] for i in range(0, len(raw), 2)]
        out = [int.from_bytes(w, "big" if self.byte_order == "big" else "little") for w in words]
        return out if self.word_order == "big" else list(reversed(out))


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    manufacturer: str
    model: str
    source: str
    registers: tuple[RegisterSpec, ...]
    max_block: int = MAX_READ
    max_gap: int = 10

    def spec(self, obis: str) -> RegisterSpec | None:
        return next((r for r in self.registers if r.obis == obis), None)


_PROFILE_KEYS = {"name", "manufacturer", "model", "source", "max_block", "max_gap",
                 "word_order", "byte_order"}
_REGISTER_KEYS = {"obis", "address", "function", "type", "unit", "scale", "word_order",
                  "byte_order", "note"}


def parse_profile(data: dict[str, Any], file: str) -> Profile:
    head = data.get("profile")
    if not isinstance(head, dict):
        raise ProfileError(file, "[profile]", "missing; it names the meter and cites its source")
    unknown = set(head) - _PROFILE_KEYS
    if unknown:
        raise ProfileError(file, "[profile]", f"unknown keys {sorted(unknown)}")
    for key in ("name", "source"):
        if not isinstance(head.get(key), str) or not head[key]:
            raise ProfileError(file, f"[profile].{key}", "is required (a non-empty string)")
    max_block = head.get("max_block", MAX_READ)
    if not isinstance(max_block, int) or not 1 <= max_block <= MAX_READ:
        raise ProfileError(file, "[profile].max_block", f"must be 1..{MAX_READ}")
    max_gap = head.get("max_gap", 10)
    if not isinstance(max_gap, int) or max_gap < 0:
        raise ProfileError(file, "[profile].max_gap", "must be a whole number ≥ 0")
    default_words = head.get("word_order", "big")
    default_bytes = head.get("byte_order", "big")
    regs = data.get("register")
    if not isinstance(regs, list) or not regs:
        raise ProfileError(file, "[[register]]", "a profile needs at least one register")
    specs = [_register(r, i, file, default_words, default_bytes) for i, r in enumerate(regs)]
    seen: dict[str, int] = {}
    for i, s in enumerate(specs):
        if s.obis in seen:
            raise ProfileError(file, f"register[{i}] ({s.obis})",
                               f"OBIS code already mapped by register[{seen[s.obis]}]")
        seen[s.obis] = i
    return Profile(head["name"], head.get("manufacturer", ""), head.get("model", ""),
                   head["source"], tuple(specs), max_block, max_gap)


def _register(r: Any, i: int, file: str, words: str, byteorder: str) -> RegisterSpec:
    where = f"register[{i}]"
    if not isinstance(r, dict):
        raise ProfileError(file, where, "must be a table")
    if isinstance(r.get("obis"), str):
        where = f"register[{i}] ({r['obis']})"
    unknown = set(r) - _REGISTER_KEYS
    if unknown:
        raise ProfileError(file, where, f"unknown keys {sorted(unknown)}")
    for key, kind in (("obis", str), ("address", int), ("type", str), ("unit", str)):
        if not isinstance(r.get(key), kind) or isinstance(r.get(key), bool):
            raise ProfileError(file, f"{where}.{key}", f"is required ({kind.__name__})")
    if r["type"] not in TYPES:
        raise ProfileError(file, f"{where}.type", f"{r['type']!r} is not one of {sorted(TYPES)}")
    function = r.get("function", "holding")
    if function not in FUNCTIONS:
        raise ProfileError(file, f"{where}.function", f"{function!r} must be holding or input")
    words_needed = TYPES[r["type"]][0]
    if not 0 <= r["address"] <= 0xFFFF - words_needed + 1:
        raise ProfileError(file, f"{where}.address", f"{r['address']} is outside 0..65535")
    scale = r.get("scale", 1.0)
    if not isinstance(scale, int | float) or isinstance(scale, bool) or scale == 0 \
            or not math.isfinite(scale):
        raise ProfileError(file, f"{where}.scale", "must be a non-zero number")
    word_order = r.get("word_order", words)
    byte_order = r.get("byte_order", byteorder)
    for key, value in (("word_order", word_order), ("byte_order", byte_order)):
        if value not in ORDERS:
            raise ProfileError(file, f"{where}.{key}", f"{value!r} must be big or little")
    return RegisterSpec(r["obis"], r["address"], function, r["type"], r["unit"], float(scale),
                        word_order, byte_order)


def load_profile_file(path: Path) -> Profile:
    try:
        data = tomllib.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileError(str(path), "(file)", f"cannot read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(str(path), "(syntax)", str(exc)) from None
    return parse_profile(data, str(path))


def builtin_profiles() -> dict[str, Profile]:
    folder = resources.files("protocols.modbus") / "profiles"
    out = {}
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".toml"):
            profile = parse_profile(tomllib.loads(entry.read_text("utf-8")),
                                    f"profiles/{entry.name}")
            out[profile.name] = profile
    return out


def find_profile(name: str, extra_dirs: tuple[str, ...] = ()) -> Profile:
    """A user's directory wins over the shipped profiles, so a local fix needs no release."""
    for folder in extra_dirs:
        candidate = Path(folder) / f"{name}.toml"
        if candidate.exists():
            return load_profile_file(candidate)
    shipped = builtin_profiles()
    if name in shipped:
        return shipped[name]
    raise ProfileError(name, "(profile)",
                       f"no profile named {name!r}; shipped: {', '.join(sorted(shipped))}")
