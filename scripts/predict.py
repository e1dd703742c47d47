"""`jaxcnn predict` as a script: `python scripts/predict.py --help`."""

import sys

from jaxcnn.cli import main

if __name__ == "__main__":
    sys.exit(main(["predict", *sys.argv[1:]]))
