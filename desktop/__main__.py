import sys

from storypulse.desktop.cli import desktop_command

sys.exit(desktop_command(sys.argv[1:]))
