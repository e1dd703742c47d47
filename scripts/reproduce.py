"""`jaxcnn reproduce` as a script: `python scripts/reproduce.py --help`."""

import sys

from jaxcnn.cli import main

if __name__ == "__main__":
    sys.exit(main(["reproduce", *sys.argv[1:]]))
