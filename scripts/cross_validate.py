"""`jaxcnn cv` as a script: `python scripts/cross_validate.py --help`."""

import sys

from jaxcnn.cli import main

if __name__ == "__main__":
    sys.exit(main(["cv", *sys.argv[1:]]))
