"""Entry of the frozen `storypulse-desktop` bundle.

Without a subcommand it opens the desktop app (`storypulse-desktop --server
HOST:PORT` is `storypulse desktop --server HOST:PORT`); with one it runs it, so
the bundle can also be the `server` that `demo` starts beside the app.
"""

import multiprocessing
import sys

if __name__ == "__main__":
    multiprocessing.freeze_support()
    from common.cli import main

    if len(sys.argv) == 1 or sys.argv[1].startswith("-"):
        sys.argv.insert(1, "desktop")
    sys.exit(main())
