"""Run by tests/test_desktop_scale.py in a fresh process with QT_SCALE_FACTOR set (and a font size, if
given as the argument): the tabs at that scale.

Prints one JSON line: what was measured and a list of problems (empty when all is well):
a big number or a title cut off, a chart laid out wider than its view, value
labels wider than their axis, time labels that overlap, cached drawings less sharp than drawn afresh, chart lines thinner
than the text beside them.
"""

from __future__ import annotations

import json
import os
import sys
import time
from types import SimpleNamespace

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtGui import QFontMetricsF, QImage  # noqa: E402
from PySide6.QtWidgets import QGraphicsItem  # noqa: E402

from storypulse.desktop import theme  # noqa: E402
from storypulse.protocol import StageStats  # noqa: E402
from storypulse.desktop.app import ensure_app  # noqa: E402
from storypulse.desktop.chart_axes import TEXT_GAP, TimeAxis, ValueAxis  # noqa: E402
from storypulse.desktop.flow_math import FLOW_FIELDS  # noqa: E402
from storypulse.desktop.series import FIELDS  # noqa: E402


def row(ts: float, i: int):
    """A busy server some hours in: wide numbers everywhere (a count in the millions, rates in hundreds)."""
    values = {name: 40 + (i * 7919) % 600 for name in set(FIELDS) | set(FLOW_FIELDS)}
    values.update(ts=ts, seq=i, stories_produced_per_s=523.4 + i % 7, stories_completed_per_s=520.9 - i % 5,
                  wip_limit=0, flow_window_s=60.0, open_stories=12_345 + i % 40, stories_in_progress=8_765,
                  completed_stories=9_987_654 + 500 * i, stories_completed_in_window=31_200,
                  lead_time_mean_s=23.7, lead_time_p50_s=12.5, lead_time_p85_s=34.5, lead_time_p95_s=99.9,
                  database="ok", flow_efficiency=0.07, bottleneck="test")
    # A workflow with wide figures too: its cards must fit as well.
    values["stages"] = [
        StageStats(name=name, workers=64, workers_busy=63, min_workers=1, max_workers=64, tasks_queued=123_456,
                   tasks_ready=99_999, tasks_running=63, tasks_blocked=1_234, stories=stories, wip_limit=1_000,
                   wait_s=2.0)
        for name, stories in (("analysis", 865), ("build", 7_000), ("test", 900))]
    return SimpleNamespace(**values)


def sharpness(image: QImage) -> int:
    """How much neighbouring pixels differ along the rows: blurred (scaled-up) type differs less."""
    total = 0
    for y in range(image.height()):
        previous = None
        for x in range(image.width()):
            value = image.pixel(x, y) & 0xFF
            if previous is not None:
                total += abs(value - previous)
            previous = value
    return total


def render(item: QGraphicsItem, view, cached: bool) -> QImage:
    item.setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache if cached else QGraphicsItem.CacheMode.NoCache)
    view.viewport().repaint()
    image = view.grab().toImage()
    box = item.mapRectToScene(item.boundingRect())
    ratio = image.devicePixelRatio()
    return image.copy(round(box.x() * ratio), round(box.y() * ratio), round(box.width() * ratio),
                      round(box.height() * ratio))


def main() -> int:
    app = ensure_app()
    if len(sys.argv) > 1:  # a point size for the application font: a desktop set to large type
        font = app.font()
        font.setPointSizeF(float(sys.argv[1]))
        app.setFont(font)
    from storypulse.desktop.dashboard import Dashboard
    from storypulse.desktop.flow import FlowTab

    problems: list[str] = []
    fake = SimpleNamespace(call=lambda *a, **k: 0)
    dashboard, flow = Dashboard(), FlowTab(fake, fake)
    now = time.time()
    rows = [row(now - 300 + k, k) for k in range(301)]
    batch = SimpleNamespace(snapshot=SimpleNamespace(history=rows[:-1], stats=rows[-1], completions=[]), stats=[],
                            story_events=[], pool_events=[])
    for tab in (dashboard, flow):
        tab.resize(980, 720)  # what the tabs get in a 1280 × 800 window beside the side panel
        tab.apply_batch(batch)
        tab.show()
        tab.set_window(60)
    app.processEvents()
    dashboard._text_tick(), flow._text_tick()
    dashboard._plot_tick(), flow._plot_tick()
    app.processEvents()

    strip = flow.stage_strip
    cards = [(c.title, c.pool, c.stories, c.badge) for c in strip.cards]
    for tab in (dashboard, flow):
        labels = [(box.title, box.value) for box in tab.numbers.values()]
        if tab is flow:
            labels += [(strip.efficiency.title, strip.efficiency.value, strip.efficiency.detail), *cards]
        for label in (label for group in labels for label in group):
            needed = QFontMetricsF(label.font()).horizontalAdvance(label.text())
            if label.isVisible() and needed > label.contentsRect().width() + 0.5:
                problems.append(f"{label.text()!r} needs {needed:.0f} px, has {label.contentsRect().width()}")
        views = [dashboard.charts] if tab is dashboard else [*tab.views.values(), tab.burnup.view]
        for view in views:
            # A chart laid out wider or taller than its view (a title that will not shrink) is cut off.
            laid_out, shown = view.ci.geometry(), view.viewport().rect()
            if laid_out.width() > shown.width() + 0.5 or laid_out.height() > shown.height() + 0.5:
                problems.append(f"{view.accessibleName() or 'the burn-up'} laid out {laid_out.width():.0f} × "
                                f"{laid_out.height():.0f} px in a view of {shown.width()} × {shown.height()}")
            for item in view.scene().items():
                if isinstance(item, ValueAxis) and item.isVisible():
                    lo, hi = sorted(item.range)
                    length = item.geometry().height()
                    widest = max((item.metrics().horizontalAdvance(item.tick_text(v, hi - lo, length))
                                  for v in item.tick_values(lo, hi, length)), default=0)
                    if widest + TEXT_GAP > item.width():
                        problems.append(f"value labels {widest:.0f} px wide on an axis of {item.width():.0f}")
                if isinstance(item, TimeAxis) and item.isVisible():
                    lo, hi = sorted(item.range)
                    length = item.geometry().width()
                    ticks = item.tick_values(lo, hi, length)
                    width = max(item.metrics().horizontalAdvance(item.tick_text(v, hi - lo, length)) for v in ticks)
                    gap = min((b - a) * length / (hi - lo) for a, b in zip(ticks, ticks[1:]))
                    if gap < width * 1.2:
                        problems.append(f"time labels {width:.0f} px wide only {gap:.0f} px apart")

    # Cached drawings (titles, legends, value axes) against the same drawn afresh.
    title = dashboard.plots[0].titleLabel
    fresh, cached = render(title, dashboard.charts, False), render(title, dashboard.charts, True)
    if sharpness(cached) < 0.9 * sharpness(fresh):
        problems.append(f"a cached title is blurred: sharpness {sharpness(cached)} against {sharpness(fresh)}")
    ratio = dashboard.charts.devicePixelRatioF()
    width = next(iter(dashboard.curves.values())).pen().widthF()
    if width != max(1, round(ratio)):
        problems.append(f"chart lines {width} device pixels wide at a device pixel ratio of {ratio}")
    print(json.dumps({"ratio": ratio, "line_width": width, "problems": problems,
                      "theme": theme.current().name}), flush=True)
    for tab in (dashboard, flow):  # widgets go before the application, or Python's exit may crash
        for t in (tab.plot_timer, tab.text_timer):
            t.stop()
        tab.deleteLater()
    app.processEvents()
    return 0


if __name__ == "__main__":
    sys.exit(main())
