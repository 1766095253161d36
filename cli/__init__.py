"""The terminal applications: the `storypulse` dispatcher and the headless client commands.

`storypulse.cli:main` is the console script; the commands here talk to a server
through the shared core (storypulse.*) only, never through the server or the
desktop packages, which the dispatcher finds through their entry points.
"""

from .dispatch import main

__all__ = ["main"]
