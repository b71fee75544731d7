"""The fuzz loop both targets share: decode each input, count what was refused with the
decoder's own error and what escaped as anything else (the bug the fuzz is for)."""

from __future__ import annotations

import time
import traceback
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field


@dataclass
class Tally:
    outcomes: Counter[str] = field(default_factory=Counter)
    escapes: list[tuple[bytes, str]] = field(default_factory=list)
    elapsed: float = 0.0


def tally(data: Sequence[bytes], decode: Callable[[bytes], object],
          refused: type[Exception], keep: int = 200) -> Tally:
    out = Tally()
    started = time.perf_counter()
    for item in data:
        try:
            decode(item)
            out.outcomes["decoded"] += 1
        except refused:
            out.outcomes["refused"] += 1
        except Exception:
            out.outcomes["escaped"] += 1
            if len(out.escapes) < 5:
                out.escapes.append((item[:keep], traceback.format_exc(limit=4)))
    out.elapsed = time.perf_counter() - started
    return out
