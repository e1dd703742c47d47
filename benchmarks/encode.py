"""Encoding speed on MR: `python -m benchmarks.encode [DATA_DIR]` (from the repository root) prints a JSON line.

Times `TextEncoder.encode` (Kim tokenizer, vocabulary lookup, padding to 56 + 2 * 4) over all 10,662 MR sentences;
the target is under one second.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from typing import Any

from jaxcnn.data.encode import TextEncoder
from jaxcnn.data.registry import load_splits


def benchmark_encode(data_dir: str | os.PathLike | None = None, repeats: int = 5) -> dict[str, Any]:
    """Median wall time of `repeats` encodings of all MR sentences (vocabulary fitted once, untimed)."""
    texts = load_splits("mr", data_dir)["train"]["text"][:]
    encoder = TextEncoder.fit(texts, "kim", pad_width=4)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        encoder.encode(texts)
        times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    return {"sentences": len(texts), "length": encoder.length, "vocab": len(encoder.vocab), "repeats": repeats,
            "seconds": seconds, "sentences_per_s": len(texts) / seconds}


if __name__ == "__main__":
    print(json.dumps(benchmark_encode(sys.argv[1] if len(sys.argv) > 1 else None)))
