"""`python -m kdmed ...` runs the `kdmed` command (what `torchrun -m kdmed` needs)."""

import sys

from kdmed.cli import main

if __name__ == "__main__":
    sys.exit(main())
