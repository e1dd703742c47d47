"""The benchmarks: `python scripts/benchmark.py --data-dir ../shared/data --out bench/latest` (`jaxcnn bench` runs
this file). They live in benchmarks/, beside the package."""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from benchmarks.suite import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
