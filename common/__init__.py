"""The shared core, `storypulse`: what the server, the terminal commands and the desktop app share.

The protocol and its limits, endpoints, CURVE keys, the request client and the
events subscriber, the Clone-pattern seq tracker and the live-feed session
(feed_session.py) that watch and the desktop app both run, nearest-rank
percentiles (percentiles.py), the story generator and the load loop. It
imports none of the applications (tests/test_layering.py).
"""

__version__ = "0.1.0"
