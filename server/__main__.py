"""`python -m storypulse.server` runs the same as `storypulse server`."""

import sys

from storypulse.server.cli import command

if __name__ == "__main__":
    sys.exit(command(sys.argv[1:]))
