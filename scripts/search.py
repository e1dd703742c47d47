"""`jaxcnn search` as a script: `python scripts/search.py --help`."""

import sys

from jaxcnn.cli import main

if __name__ == "__main__":
    sys.exit(main(["search", *sys.argv[1:]]))
