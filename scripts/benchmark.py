"""`jaxcnn bench` as a script: `python scripts/benchmark.py --data-dir ../shared/data --out bench/latest`."""

import sys

from jaxcnn.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
