"""`jaxcnn bench` as a script: `python scripts/benchmark.py --data-dir ../shared/data --out bench/latest`."""

import sys

from jaxcnn.cli import exit_with, main

if __name__ == "__main__":
    exit_with(main(["bench", *sys.argv[1:]]))
