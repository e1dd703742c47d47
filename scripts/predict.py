"""`jaxcnn predict` as a script: `python scripts/predict.py --help`."""

import sys

from jaxcnn.cli import exit_with, main

if __name__ == "__main__":
    exit_with(main(["predict", *sys.argv[1:]]))
