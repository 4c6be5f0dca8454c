"""Simulator speed as a script; the same as `sedna bench sim` (see netsim/bench.py)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from netsim.bench import main

if __name__ == "__main__":
    sys.exit(main())
