"""`jaxcnn evaluate` as a script: `python scripts/evaluate.py --help`."""

import sys

from jaxcnn.cli import exit_with, main

if __name__ == "__main__":
    exit_with(main(["evaluate", *sys.argv[1:]]))
