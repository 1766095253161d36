"""Entry of the frozen `storypulse` bundle: the same dispatcher as the `storypulse` console script."""

import multiprocessing
import sys

if __name__ == "__main__":
    # A worker process started by the frozen server re-enters here; this runs it and exits.
    multiprocessing.freeze_support()
    from storypulse.cli import main

    sys.exit(main())
