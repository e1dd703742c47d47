"""`jaxcnn train` as a script: `python scripts/train.py --help`."""

import sys

from jaxcnn.cli import exit_with, main

if __name__ == "__main__":
    exit_with(main(["train", *sys.argv[1:]]))
