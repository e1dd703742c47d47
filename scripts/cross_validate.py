"""`jaxcnn cv` as a script: `python scripts/cross_validate.py --help`."""

import sys

from jaxcnn.cli import exit_with, main

if __name__ == "__main__":
    exit_with(main(["cv", *sys.argv[1:]]))
