"""`jaxcnn reproduce` as a script: `python scripts/reproduce.py --help`."""

import sys

from jaxcnn.cli import exit_with, main

if __name__ == "__main__":
    exit_with(main(["reproduce", *sys.argv[1:]]))
