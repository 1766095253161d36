"""`python -m server` runs the same as `storypulse server`."""

import sys

from server.cli import command

if __name__ == "__main__":
    sys.exit(command(sys.argv[1:]))
