"""Fuzz the decoders of untrusted input: every input must end in a value or a typed error.

`--target mqtt`: the MQTT payload validator, each input a Batch or a PayloadError.
`--target q1376`: the Q/GDW 1376.1 codec (framing, data units and their values), each
input decoded or refused with a FrameError; inputs are random bytes behind a plausible
header and mutations of valid frames of every layout the front end reads.

Half the inputs are random bytes, half are valid payloads with random bytes overwritten,
inserted or deleted, or a field replaced by a hostile value (NaN, huge numbers, deep
nesting, surrogates, NULs). An "escape" is any other exception: the goal is 0. The
baseline, in the same run, is json.loads alone on the same inputs, so the ratio says what
the validation costs over parsing.

    python -m bench.fuzz [--target mqtt|q1376] [--inputs 1000000] [--seed 1]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import time
from datetime import UTC, datetime

from bench.fuzz_tally import tally
from protocols.mqtt.schema import PayloadError, decode_batch

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
VALID = json.dumps({
    "v": 1, "gateway": "gw1", "seq": 3,
    "readings": [{"meter": f"m{i}", "quantity": "1-0:1.8.0", "ts": "2026-11-23T11:45:00Z",
                  "value": 1.5 + i, "unit": "kWh", "quality": "A"} for i in range(3)],
    "events": [{"meter": "m1", "ts": "2026-11-23T11:00:00Z", "kind": "cover_open",
                "details": {"count": 2, "end": "2026-11-23T11:05:00Z"}}],
    "attempts": [{"meter": "m1", "bus": "b1", "ts": "2026-11-23T11:45:00Z", "outcome": "ok",
                  "latency_ms": 12.0, "error": ""}],
}).encode()
HOSTILE = [b"NaN", b"Infinity", b"-Infinity", b"1e999", b"9" * 5000, b"true", b"null",
           b'"\\ud800"', b'"\\u0000"', b"[" * 3000, b"{}", b'"0001-01-01T00:30:00+01:00"',
           b"-0", b"1" + b"0" * 400, b'"' + b"x" * 10_000 + b'"', b"[]", b'""']


def inputs(n: int, rng: random.Random) -> list[bytes]:
    out = []
    for i in range(n):
        if i % 2 == 0:
            out.append(rng.randbytes(rng.randint(0, 64)))
            continue
        data = bytearray(VALID)
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(len(data))
            kind = rng.random()
            if kind < 0.4:
                data[at:at + 1] = rng.randbytes(1)
            elif kind < 0.6:
                del data[at:at + rng.randint(1, 8)]
            elif kind < 0.8:
                data[at:at] = rng.randbytes(rng.randint(1, 8))
            else:
                # Replace the value after a colon with a hostile one.
                colon = data.find(b":", at)
                if colon > 0:
                    end = min((p for p in (data.find(b",", colon), data.find(b"}", colon))
                               if p > 0), default=colon + 1)
                    data[colon + 1:end] = rng.choice(HOSTILE)
        out.append(bytes(data))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", choices=("mqtt", "q1376"), default="mqtt")
    parser.add_argument("--inputs", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    if args.target == "q1376":
        from bench.fuzz_q1376 import run
        run(args.inputs, rng)
        return
    data = inputs(args.inputs, rng)

    started = time.perf_counter()
    for item in data:
        with contextlib.suppress(Exception):  # the baseline only parses
            json.loads(item)
    baseline = time.perf_counter() - started

    found = tally(data, lambda item: decode_batch(item, "gw1", now=NOW), PayloadError)
    outcomes, escapes, elapsed = found.outcomes, found.escapes, found.elapsed

    print(f"{len(data):,} inputs: {outcomes['decoded']:,} decoded, "
          f"{outcomes['refused']:,} refused with PayloadError, "
          f"{outcomes['escaped']} escaped (goal 0)")
    print(f"decode_batch: {len(data) / elapsed:,.0f} inputs/s; json.loads alone "
          f"{len(data) / baseline:,.0f} inputs/s; ratio {baseline / elapsed:.2f}")
    for item, trace in escapes:
        print(f"escape on {item!r}:\n{trace}")


if __name__ == "__main__":
    main()
