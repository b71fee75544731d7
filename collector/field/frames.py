"""A frame analyser: any frame as its fields, DL/T 645 or 1376.1 told apart by itself.

Integrators paste frames from a terminal's log or a protocol sniffer every day; what
they need back is each field named, the data decoded as the head-end would decode it,
and, for a bad frame, the reason in words. The two protocols share the 68H start but
not the header: DL/T 645 has six address bytes before its second 68H, 1376.1 a length
sent twice (L L L L) before it.
"""

from __future__ import annotations

from typing import Any

from model.codec_json import plain
from protocols.dlt645 import codec as dlt
from protocols.dlt645 import data_ids
from protocols.errors import ProtocolError
from protocols.q1376 import frame as q
from protocols.q1376 import items

AFN_NAMES = {0x00: "confirm/deny", 0x01: "reset", 0x02: "link test", 0x04: "set parameters",
             0x05: "control", 0x06: "authentication", 0x0A: "query parameters",
             0x0C: "class 1 data (present)", 0x0D: "class 2 data (history)",
             0x0E: "class 3 data (events)", 0x0F: "file transfer", 0x10: "forwarding"}


def parse_hex(text: str) -> bytes:
    cleaned = "".join(text.split()).replace("0x", "").replace(",", "")
    try:
        return bytes.fromhex(cleaned)
    except ValueError:
        raise ProtocolError(f"{text[:40]!r} is not hex bytes") from None


def which(raw: bytes) -> str:
    body = raw.lstrip(b"\xfe")
    if len(body) >= 6 and body[0] == 0x68 and body[5] == 0x68 and body[1:3] == body[3:5]:
        return "q1376"
    return "dlt645"


def decode_q1376(raw: bytes) -> dict[str, Any]:
    frame = q.decode(raw)
    c = frame.control
    out: dict[str, Any] = {
        "protocol": "Q/GDW 1376.1",
        "length": len(raw),
        "control": {"hex": f"{c:02X}", "dir": "up (terminal → master)" if frame.is_uplink
                    else "down (master → terminal)", "prm": int(frame.from_initiator),
                    "fcb_acd": int(bool(c & q.FCB_ACD)), "fcv": int(bool(c & q.FCV)),
                    "function": frame.function},
        "address": {"area": frame.address.area, "terminal": frame.address.terminal,
                    "master": frame.address.master, "group": frame.address.group,
                    "text": frame.address.text},
        "afn": {"hex": f"{frame.afn:02X}", "name": AFN_NAMES.get(frame.afn, "reserved")},
        "seq": {"tpv": int(bool(frame.seq & q.TPV)), "fir": int(frame.first),
                "fin": int(frame.last), "con": int(frame.wants_confirm), "seq": frame.pseq},
    }
    if frame.pw is not None:
        out["pw"] = frame.pw.hex(" ")
    if frame.ec is not None:
        out["ec"] = list(frame.ec)
    if frame.tp is not None:
        out["tp"] = {"pfc": frame.tp[0], "sent": frame.tp[1:5][::-1].hex(" "),
                     "delay_min": frame.tp[5]}
    units = []
    for unit in items.split_units(frame):
        entry: dict[str, Any] = {"pn": unit.pn, "fn": unit.fn, "data": unit.data.hex(" ")}
        if frame.is_uplink and unit.data:
            entry["value"] = plain(items.decode_value(frame.afn, unit))
        units.append(entry)
    out["units"] = units
    return out


def decode_dlt645(raw: bytes) -> dict[str, Any]:
    frame = dlt.decode(raw)
    out: dict[str, Any] = {
        "protocol": "DL/T 645-2007", "length": len(raw), "address": frame.address,
        "control": {"hex": f"{frame.control:02X}", "reply": frame.is_reply,
                    "abnormal": frame.is_abnormal, "follows": frame.has_followup,
                    "function": f"{frame.function:02X}"},
        "data": frame.data.hex(" "),
    }
    if frame.is_abnormal and frame.data:
        out["error"] = dlt.describe_error(frame.data[0])
    elif frame.function in (dlt.FN_READ, dlt.FN_READ_FOLLOWUP) and len(frame.data) >= 4:
        di = int.from_bytes(frame.data[:4], "little")
        entry: dict[str, Any] = {"di": f"{di:08X}"}
        try:
            item = data_ids.lookup(di)
            entry["name"] = item.name
            if frame.is_reply:
                entry["values"] = [plain(v) for v in data_ids.decode_values(
                    item, frame.data[4:4 + len(frame.data) - 4])]
        except (KeyError, ProtocolError, ValueError) as exc:
            entry["note"] = str(exc) or "unknown data identifier"
        out["item"] = entry
    return out


def decode_any(raw: bytes) -> dict[str, Any]:
    """Fields of one frame; ProtocolError (FrameError) says what is wrong with it."""
    return decode_q1376(raw) if which(raw) == "q1376" else decode_dlt645(raw)
