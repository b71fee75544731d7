"""Which meters an export covers: the ones named, or every meter of an area, or all.

The CLI and the API share it so that a mistyped id or area is refused the same way on
both, rather than exporting an empty file that a billing run would take for no usage.
"""

from __future__ import annotations

from collections.abc import Sequence

from model import Meter


class SelectionError(ValueError):
    """What was asked for names no meter; the message says which."""

    def __init__(self, param: str, problem: str) -> None:
        super().__init__(f"{param}: {problem}")
        self.param = param


def export_meters(known: Sequence[Meter], meters: str | None, area: str | None) -> list[str]:
    """`meters` is comma-separated ids; area meters (transformer totals) are never
    exported as customers."""
    customers = [m for m in known if not m.is_area_meter]
    if meters:
        wanted = list(dict.fromkeys(m.strip() for m in meters.split(",") if m.strip()))
        unknown = sorted(set(wanted) - {m.id for m in customers})
        if unknown:
            more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
            raise SelectionError("meters", f"unknown {', '.join(unknown[:5])}{more}")
        return wanted
    chosen = sorted(m.id for m in customers if area is None or m.area == area)
    if area is not None and not chosen:
        areas = sorted({m.area for m in customers if m.area})
        raise SelectionError("area", f"no meters in {area!r}; known areas: "
                                     f"{', '.join(areas[:10]) or 'none'}")
    return chosen
