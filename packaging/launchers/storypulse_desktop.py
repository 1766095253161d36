"""Entry of the frozen `storypulse-desktop` bundle.

Without a subcommand it opens the desktop app (`storypulse-desktop --server
HOST:PORT` is `storypulse desktop --server HOST:PORT`); with one it runs it, so
the bundle can also be the `server` that `demo` starts beside the app.
"""

import multiprocessing
import sys

# What `python -m X` means for a process started as `sys.executable -m X ...`,
# which in a bundle is this executable.
MODULES = {"storypulse.server": "server", "storypulse.desktop": "desktop", "storypulse": None}

if __name__ == "__main__":
    multiprocessing.freeze_support()
    from storypulse.cli import main

    args = sys.argv[1:]
    if len(args) >= 2 and args[0] == "-m" and args[1] in MODULES:
        args = [MODULES[args[1]]] + args[2:] if MODULES[args[1]] else args[2:]
    if not args or (args[0].startswith("-") and args[0] != "--version"):
        args = ["desktop", *args]
    sys.exit(main(args))
