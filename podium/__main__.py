"""`python -m podium …` = `podium …` (what `torchrun -m podium predict …` runs in every rank)."""

import sys

from podium.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
