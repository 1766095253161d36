"""`python -m storypulse` is the `storypulse` command."""

import sys

from storypulse.cli import main

if __name__ == "__main__":
    sys.exit(main())
