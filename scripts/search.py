"""`jaxcnn search` as a script: `python scripts/search.py --help`."""

import sys

from jaxcnn.cli import exit_with, main

if __name__ == "__main__":
    exit_with(main(["search", *sys.argv[1:]]))
