"""The desktop app, `storypulse.desktop`: PySide6 + pyqtgraph, live off the server's PUB socket.

Threads: the feed (feed.py) receives and decodes events and snapshots in a
QThread and hands the UI coalesced batches; requests (requests.py) and the
simulator (simulator.py) have QThreads of their own, so the UI thread only
draws. Tabs: the dashboard (dashboard.py, cards.py, chart_items.py,
chart_axes.py, series.py), the stories table (stories.py over story_model.py's
paged cache) and the flow figures (flow.py over flow_math.py); what every chart
shows over time and values in ranges.py. Colours come from theme.py (light,
dark, the system's); annotations (annotations.py, fed by note_sources.py)
mark on every time chart what happened. pyqtgraph's private state is touched
in viewbox_fast.py only. It talks to the server through the shared core
(`storypulse.*`) and starts it, for the demo, as a process (demo.py), never
as an import (tests/test_layering.py).
"""
