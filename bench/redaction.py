"""Benchmark the secret redactor on 1 MB of crafted text (issue 14: it runs on text an instance
controls, so it must stay linear). Each case is built to defeat a naive pattern: private-key
markers with no END, markers with an END only at the very end, bearer words with no token, long
whitespace runs. Target: under 50 ms per MB for every case. Prints numbers, asserts nothing.
Usage: python -m bench.redaction
"""
from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from convos.redaction import redact  # noqa: E402

MB = 1_000_000
BEGIN, END = (f"-----{marker} PRIVATE KEY-----" for marker in ("BEGIN", "END"))  # markers only, no key material
CASES = {
    "BEGIN markers, no END": BEGIN * (MB // len(BEGIN)),
    "BEGIN markers, one END last": BEGIN * (MB // len(BEGIN)) + END,
    "END then BEGIN markers": END + BEGIN * (MB // len(BEGIN)),
    "complete keys": (BEGIN + "MIIB" + END + " ") * (MB // (len(BEGIN) + len(END) + 5)),
    "'bearer ' with no token": "bearer " * (MB // 7),
    "'Bearer' then 1 MB of spaces": "Bearer" + " " * MB,
    "key prefixes with no key": ("sk-or-v1-" + "ghp_" + "0x") * (MB // 15),
    "ordinary log text": "tick done in 12 ms: observed 1000 instances, nothing to change\n" * (MB // 64),
}


def main() -> None:
    print(f"redact() on ~1 MB, best and median of 5 runs (target < 50 ms):")
    for name, text in CASES.items():
        runs = []
        for _ in range(5):
            started = time.perf_counter()
            redact(text)
            runs.append((time.perf_counter() - started) * 1000)
        print(f"  {name:32} {len(text) / MB:4.2f} MB  best {min(runs):6.1f} ms  median {statistics.median(runs):6.1f} ms")


if __name__ == "__main__":
    main()
