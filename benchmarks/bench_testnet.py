"""Testnet saturation benchmark as a script; the same as `sedna bench testnet`."""

import sys

from node.tools.bench_testnet import main

if __name__ == "__main__":
    sys.exit(main())
