"""The Flow tab: cumulative flow, lead times, aging work in progress, Little's law and the WIP limit.

With a workflow (more than one stage) it shows the workflow too: a band per
stage in the cumulative flow diagram, a column per stage in the aging chart
(aging.py), and a strip of cards with the flow efficiency, the bottleneck and
each stage's pool and WIP limit (stage_views.py, over stage_math.py).

The same drawing discipline as the dashboard (dashboard.py, chart_items.py):
FeedBatches go into bounded buffers and nothing is drawn on arrival; a 25 Hz
timer pushes new data into items made once and scrolls the time charts, only
while the tab is visible and not paused; a 4 Hz timer sets the text and the y
ranges. Aging work in progress needs the open stories themselves: once a
second while the tab shows, the oldest page of them is asked for through the
request thread, one request at a time. The arithmetic is in flow_math.py.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Signal, Slot
from PySide6.QtWidgets import QGraphicsView, QGridLayout, QHBoxLayout, QLabel, QPushButton, QSpinBox, QWidget

from storypulse import protocol
from storypulse.format import duration

from . import theme
from .aging import AgingChart, aging_text
from .annotations import ChartNotes
from .burnup import BurnUp
from .cards import BigNumber, Card, LimitFollower
from .chart_items import (
    Band, Dots, LiveCurve, add_time_plot, cache_drawing, fit_y, legend_title, name_chart, scroll_chart, share_title_row,
    theme_chart,
)
from .diagnostics import Diagnostics
from .flow_math import (
    COMPLETED_AT, FLOW_FIELDS, MEASURES, Aging, CompletionBuffer, FlowCoverage, LittlesLaw, Measure,
    aging, cfd_edges, littles_law, oldest_page, predicted_wip, stride,
)
from .measure_choice import MeasureChoice
from .requests import Requests
from .live import live_layout, may_draw, readout_label, timer
from .ranges import time_span
from .series import SeriesBuffer, ServerClock, peak_decimate
from .stage_math import StageSeries, stage_edges, stage_names, stage_role
from .stage_views import StageBands, StageStrip

CHART_NAMES = {"cfd": "Cumulative flow chart", "lead": "Lead or cycle time chart",
               "aging": "Aging work in progress chart", "little": "Little's law chart"}
CHART_DESCRIPTIONS = {
    "cfd": "Stories done, in progress and waiting, stacked over time",
    "lead": "The lead time (or the cycle time, as chosen) of every completed story, with its p50, p85 and p95 "
            "over time",
    "aging": "The oldest open stories by age, waiting or in progress (or in each stage), against the p85 lead "
             "time; blocked ones marked with a square",
    "little": "Work in progress, stories in progress, throughput times mean lead time, and the WIP limit over time",
}
PLOT_HZ = 25
TEXT_HZ = 4
AGING_INTERVAL_MS = 1000  # the oldest open stories, asked for at most this often
BUFFER_SECONDS = 3600 + 120  # the longest window plus a margin
BUFFER_RATE = 10.0
MAX_POINTS = 1200  # per curve or band edge after decimation
MAX_DOTS = 4000  # completions drawn in the window at most (thinned evenly beyond)
# Completions kept for the scatter (6.4 MB): an hour's window at 27 a second, 5 minutes at 333.
COMPLETIONS_KEPT = 100_000
COLUMN_STRETCH = (3, 3, 2)  # with a workflow: the two columns of charts, then the burn-up's
DOTS_EVERY_S = 0.2  # new dots at most this often: a flood of completions costs no more

# Series roles (theme.SERIES: colour and line style), by what they draw.
BAND_ROLES = {"done": "done", "progress": "in_progress", "waiting": "open"}
PERCENTILE_ROLES = ("p50", "p85", "p95")  # each line's name, legend label and role
LITTLE_CURVES = (
    # series, legend, role
    ("open_stories", "WIP", "open"),
    ("predicted_wip", "throughput × lead time", "predicted"),
    ("stories_in_progress", "in progress", "in_progress"),
    ("wip_limit", "limit", "limit"),
)
def format_seconds(value: float | None) -> str:
    return "–" if value is None or not math.isfinite(value) else duration(value)


def format_littles(law: LittlesLaw | None) -> str:
    """Little's law as the tab states it; tests compare the label with this applied to the stats fed."""
    if law is None:
        return "Little's law: waiting for stats…"
    if law.predicted is None:
        return (f"Little's law: WIP {law.wip:,} open stories; throughput × mean lead time needs stories "
                "completed in the flow window")
    over = (f"{law.covered_s:,.0f} s (the {law.window_s:g} s window fills)" if law.filling
            else f"the last {law.window_s:g} s")
    return (f"Little's law over {over}: WIP {law.wip:,} open stories ≈ throughput "
            f"{law.throughput_per_s:,.2f}/s × mean lead time {format_seconds(law.mean_lead_s)} = {law.predicted:,.1f}")


def percentiles_title(measure: Measure) -> str:
    return f"{measure.name} p50 · p85 · p95, s"


def format_percentiles(stats, measure: Measure) -> str:
    values = [getattr(stats, field) for field in measure.percentiles.values()]
    if any(v is None for v in values):
        return "–"
    return " · ".join(f"{v:,.1f}" for v in values)


class WipLimitBox(Card):
    """The WIP limit in force and a spin box to change it (0: none)."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__("limit", parent)
        self.title = QLabel("WIP &limit (in progress)")
        self.spin = QSpinBox()
        self.title.setBuddy(self.spin)
        self.spin.setRange(0, protocol.WIP_LIMIT_MAX)
        self.spin.setSpecialValueText("none")  # 0 lifts the limit
        self.spin.setToolTip("With a limit, a story's tasks start only while fewer stories than this are in "
                             "progress; the others wait in creation order. 0: no limit.")
        self.spin.setAccessibleName("WIP limit (in progress)")
        self.apply = QPushButton("Apply")
        self.apply.setAccessibleName("Apply the WIP limit")
        row = QHBoxLayout()
        row.addWidget(self.spin, 1)
        row.addWidget(self.apply)
        self.layout_.addWidget(self.title)
        self.layout_.addLayout(row)
        self.follower = LimitFollower(self.spin)
        theme.follow(self, self.apply_theme)

    def apply_theme(self, colours: theme.Theme) -> None:
        theme.set_text_colour(self.title, colours.muted)
        super().apply_theme(colours)


class FlowTab(QWidget):
    message = Signal(str)  # for the status bar
    wip_limit_set = Signal(int)  # the server took a WIP limit from this app
    stage_limit_set = Signal(str, int)  # ... or a stage's

    def __init__(self, requests: Requests, pages: Requests, parent: QWidget | None = None):
        super().__init__(parent)
        pg.setConfigOptions(antialias=False)
        self.requests = requests  # set_flow: a user's action, never behind slow pages
        self.pages = pages  # the aging page
        self.buffer = SeriesBuffer(int(BUFFER_SECONDS * BUFFER_RATE), max_rate=BUFFER_RATE, fields=FLOW_FIELDS)
        self.stage_series: StageSeries | None = None  # the stories per stage, row for row, once a workflow shows
        self.stage_names: tuple[str, ...] = ()  # the workflow's stages (none: one stage)
        self.completions = CompletionBuffer(COMPLETIONS_KEPT)
        self.coverage = FlowCoverage()  # how much of the flow window the server has counted: Little's law
        self.clock = ServerClock()
        self.window_s = 300
        self.paused = False
        self.diagnostics = Diagnostics()  # "ticks", "frames", "aging requests", "dot paints" (lead times)
        self.aging_state: Aging | None = None
        self.aging_total = 0  # open stories when the aging page was taken
        self.littles: LittlesLaw | None = None
        self._dirty = self._dots_dirty = False
        self._dots_at = 0.0  # monotonic time the dots were last made
        self._aging_in_flight = False
        self._open_total = 0  # open stories, from the newest stats or list reply

        self.numbers = {
            "open": BigNumber("WIP (open)", "open"),
            "progress": BigNumber("In progress", "in_progress"),
            "predicted": BigNumber("Throughput × lead time", "predicted"),
            # Three figures in one box: a smaller type.
            "percentiles": BigNumber(percentiles_title(MEASURES["lead"]), "p85", scale=1.75),
        }
        for box in self.numbers.values():
            box.squeezable()  # rather than widening the window: the tab shares it with the side panel
        self.numbers["predicted"].setToolTip("Little's law: in a steady flow, work in progress equals "
                                             "throughput × mean lead time.")
        self.wip = WipLimitBox()
        self.wip.apply.clicked.connect(self.submit_wip_limit)
        numbers_row = QHBoxLayout()
        numbers_row.setSpacing(8)
        for name, box in self.numbers.items():
            numbers_row.addWidget(box, {"open": 2, "progress": 2, "predicted": 3, "percentiles": 4}[name])
        numbers_row.addWidget(self.wip)
        self.stage_strip = StageStrip()  # hidden without a workflow
        self.stage_strip.limit_requested.connect(self.submit_stage_limit)

        # One view per chart: the aging chart, which changes once a second, is not
        # painted again at every frame of the three that scroll.
        self.views = {name: _chart_view(name) for name in CHART_NAMES}
        self.time_charts: list[tuple[pg.PlotItem, object, object]] = []
        self._titles: dict[pg.PlotItem, tuple[str, tuple]] = {}  # title and keys, coloured by apply_theme
        self._build_cfd()
        self._build_lead_times()
        self._build_aging()
        self._build_littles()
        # charts side by side keep their tops level, whatever their titles' lines
        share_title_row(self.cfd, self.lead_plot)
        share_title_row(self.aging_plot, self.little_plot)
        self.chart_area = QWidget()
        self.chart_grid = QGridLayout(self.chart_area)
        self.chart_grid.setContentsMargins(0, 0, 0, 0)
        self.chart_grid.setSpacing(0)
        # the forecast (burnup.py): under the four charts, or beside them with a workflow (_arrange)
        self.burnup = BurnUp(self.buffer, self.clock, window=lambda: self.window_s, paused=lambda: self.paused)
        self._workflow_layout: bool | None = None
        self._arrange(workflow=False)

        self.readout = readout_label(format_littles(None))
        live_layout(self, numbers_row, self.chart_area, self.readout).insertWidget(1, self.stage_strip)
        self.plot_timer = timer(self, 1000 // PLOT_HZ, self._plot_tick)
        self.text_timer = timer(self, 1000 // TEXT_HZ, self._text_tick)
        self.aging_timer = timer(self, AGING_INTERVAL_MS, self.request_aging)
        self.notes = ChartNotes([plot for plot, _, _ in self.time_charts], self)
        theme.follow(self, self.apply_theme)

    def apply_theme(self, colours: theme.Theme) -> None:
        """Every pen and brush of the charts anew (the text outside them follows the app's palette)."""
        for view in self.views.values():
            view.setBackground(colours.surface)
        for plot, _, grid in self.time_charts:
            theme_chart(plot, colours, grid, title=legend_title(*self._titles[plot], colours))
        self.aging_chart.apply_theme(colours)
        for key, band in self.bands.items():
            band.set_colour(colours.colour(BAND_ROLES[key]))
        self.stage_bands.apply_theme(colours)
        self.dots.set_colour(colours.colour("lead_time"))
        for name, curve in self.percentile_curves.items():
            curve.set_pen(colours.pen(name))
        for name, _, role in LITTLE_CURVES:
            self.little_curves[name].set_pen(colours.pen(role))

    # -- charts, made once ----------------------------------------------------------
    def _time_plot(self, view: str, title: str, keys: tuple) -> pg.PlotItem:
        plot, axis, grid = add_time_plot(self.views[view].ci, title, diagnostics=self.diagnostics)
        self._titles[plot] = (title, keys)
        cache_drawing(plot.titleLabel)
        self.time_charts.append((plot, axis, grid))
        return plot

    def _build_cfd(self) -> None:
        self.cfd = self._time_plot("cfd", "Cumulative flow", (("waiting", "open", "band"),
                                                              ("in progress", "in_progress", "band"),
                                                              ("done", "done", "band")))
        self.bands = {key: Band(theme.current().colour(role)) for key, role in BAND_ROLES.items()}
        for band in self.bands.values():
            self.cfd.vb.addItem(band)
        self.stage_bands = StageBands(self.cfd.vb, self.bands["progress"])
        self.cfd_edges: tuple[np.ndarray, ...] = ()  # (ts, done, done + in progress, arrived) as drawn
        self.cfd_stage_edges: list[np.ndarray] = []  # with a workflow: stage_edges as drawn (ts apart)

    def _build_lead_times(self) -> None:
        """Lead or cycle time per story (self.measure, chosen in the chart's title row: measure_choice.py)."""
        self.measure = MEASURES["lead"]
        self.lead_plot = self._time_plot("lead", *self._lead_title())
        self.measure_choice = MeasureChoice(self.views["lead"])
        self.measure_choice.changed.connect(self.set_measure)
        # (the view's right margin, room for the last time label, takes part of the box)
        right_margin = self.views["lead"].ci.layout.getContentsMargins()[2]
        self.lead_plot.titleLabel.reserve = max(0, self.measure_choice.width() - right_margin)
        self.dots = Dots(theme.current().colour("lead_time"), size=4, diagnostics=self.diagnostics)  # thousands: squares
        self.lead_plot.vb.addItem(self.dots)
        self.percentile_curves = {}
        for name in PERCENTILE_ROLES:
            curve = LiveCurve(theme.current().pen(name))
            curve.setZValue(2)  # over the dots
            self.lead_plot.vb.addItem(curve)
            self.percentile_curves[name] = curve

    def _lead_title(self) -> tuple[str, tuple]:
        return (f"{self.measure.name} per completed story, s",
                (("story", "lead_time", "dots"), *((p, p, "line") for p in PERCENTILE_ROLES)))

    @Slot(object)
    def set_measure(self, measure: Measure) -> None:
        """Plot lead time or cycle time: the dots, the percentile lines, the title and the y range anew."""
        if measure == self.measure:
            return
        self.measure = measure
        self.measure_choice.choose(measure.key)
        # The figures above the charts follow the chart: the percentiles of the measure it plots.
        self.numbers["percentiles"].set_title(percentiles_title(measure))
        if self.clock.latest is not None:  # (before any stats the box shows "–" whatever the measure)
            self.numbers["percentiles"].set_text(format_percentiles(self.clock.latest, measure))
        self._titles[self.lead_plot] = self._lead_title()
        colours = theme.current()
        theme_chart(self.lead_plot, colours, title=legend_title(*self._titles[self.lead_plot], colours))
        self._dirty = self._dots_dirty = True
        self._dots_at = 0.0  # at once, not at the next dot time
        if self.isVisible():
            self._draw(self.clock.now())
            self._update_y_ranges()

    def _build_aging(self) -> None:
        self.aging_chart = AgingChart(self.views["aging"].ci)
        self.aging_plot = self.aging_chart.plot
        # (the chart's items, by the names the tests and the benchmark read)
        self.aging_dots, self.risk_dots, self.p85_line = self.aging_chart.calm, self.aging_chart.risk, \
            self.aging_chart.p85_line

    def _build_littles(self) -> None:
        self.little_plot = self._time_plot("little", "Little's law",
                                           tuple((label, role, "line") for _, label, role in LITTLE_CURVES))
        self.little_curves = {}
        for name, _, role in LITTLE_CURVES:
            curve = LiveCurve(theme.current().pen(role))
            self.little_plot.vb.addItem(curve)
            self.little_curves[name] = curve
        # WIP is never below the stories in progress and often equal to them: drawn last, it stays in view.
        self.little_curves["open_stories"].setZValue(1)

    # -- data in ------------------------------------------------------------------
    @Slot(object)
    def apply_batch(self, batch) -> None:
        if batch.snapshot is not None:
            snap = batch.snapshot
            self._keep([*snap.history, snap.stats])
            for stats in (*snap.history, snap.stats):
                self.coverage.take(stats)
            if snap.completions:
                self.coverage.saw_completion(snap.completions[0].completed_at)
            self.completions.merge_snapshot(snap.completions)
            self._take_stats(snap.stats, initial=True)
            self._dirty = self._dots_dirty = True
        if batch.stats:
            self._keep(batch.stats)
            for stats in batch.stats:
                self.coverage.take(stats)
            self._take_stats(batch.stats[-1])
            self._dirty = True
        done = [(e.ts, e.lead_time_s, e.cycle_time_s, e.story_id) for e in batch.story_events
                if e.event == "completed" and e.lead_time_s is not None]
        if done:
            self.completions.extend(done)
            self._dots_dirty = True

    def _keep(self, rows) -> None:
        """Stats rows into the series (and the stories per stage, row for row, once there is a workflow)."""
        for stats in rows:
            if self.stage_series is None and stage_names(stats):
                self.stage_series = StageSeries(self.buffer.capacity, len(self.buffer))
            if self.buffer.append(stats) and self.stage_series is not None:
                self.stage_series.append(stats)

    def _take_stats(self, stats, initial: bool = False) -> None:
        self.clock.update(stats)
        self._open_total = stats.open_stories
        self.wip.follower.show(stats.wip_limit, initial)
        names = stage_names(stats)
        if names != self.stage_names:
            self._use_stages(names)
        if initial:
            self.stage_strip.show_stats(stats, initial=True)

    def _use_stages(self, names: tuple[str, ...]) -> None:
        """A workflow (or none): a band, an aging column and a card per stage, the keys to match."""
        self.stage_names = names
        colours = theme.current()
        self.stage_bands.set_stages(names, colours)
        self.stage_strip.set_stages(names)
        self.aging_chart.set_stages(names)
        bands = (("waiting", "open", "band"),
                 *(((n, stage_role(i), "band") for i, n in enumerate(names)) if names
                   else (("in progress", "in_progress", "band"),)),
                 ("done", "done", "band"))
        self._titles[self.cfd] = (self._titles[self.cfd][0], bands)
        self._arrange(workflow=bool(names))
        self.apply_theme(colours)
        self._dirty = True

    def _arrange(self, workflow: bool) -> None:
        """The charts' places. Without a workflow: the four charts two by two, the burn-up a row under them.
        With one, the stage cards above take the height the charts need, so the burn-up becomes a column
        of its own at the right (its figures under it) and the four charts keep two rows between them."""
        if workflow == self._workflow_layout:
            return
        self._workflow_layout = workflow
        grid = self.chart_grid
        for widget in (*self.views.values(), self.burnup):
            grid.removeWidget(widget)
        for view, (row, column) in zip(self.views.values(), ((0, 0), (0, 1), (1, 0), (1, 1))):
            grid.addWidget(view, row, column)
        if workflow:
            grid.addWidget(self.burnup, 0, 2, 2, 1)
        else:
            grid.addWidget(self.burnup, 2, 0, 1, 2)
        # (equal widths and heights for the four charts, whatever their titles)
        for i, stretch in enumerate((1, 1, 0) if workflow else (1, 1, 1)):
            grid.setRowStretch(i, stretch)
        for i, stretch in enumerate(COLUMN_STRETCH if workflow else (1, 1, 0)):
            grid.setColumnStretch(i, stretch)
        self.burnup.set_stacked(workflow)

    def cfd_stack(self) -> list[Band]:
        """The bands of the cumulative flow diagram shown, bottom to top."""
        middle = self.stage_bands.stack() if self.stage_names else [self.bands["progress"]]
        return [self.bands["done"], *middle, self.bands["waiting"]]

    # -- controls -------------------------------------------------------------------
    def set_window(self, seconds: int) -> None:
        self.window_s = seconds
        self._dirty = self._dots_dirty = True
        if self.isVisible():
            self._draw(self.clock.now())
            self._update_y_ranges()

    @Slot(bool)
    def set_paused(self, paused: bool) -> None:
        """Paused with the dashboard: no drawing, no aging requests."""
        self.paused = paused
        for t in (self.plot_timer, self.aging_timer):
            t.stop() if paused else t.start()

    @Slot()
    def submit_wip_limit(self) -> None:
        limit = self.wip.spin.value()
        self.wip.apply.setEnabled(False)

        def done(result: protocol.FlowResult) -> None:
            self.wip.apply.setEnabled(True)
            self.wip.spin.setValue(result.wip_limit)
            what = f"WIP limit now {result.wip_limit:,}" if result.wip_limit else "WIP limit lifted"
            self.message.emit(f"{what} (lead times over the last {result.flow_window_s:g} s).")
            self.wip_limit_set.emit(result.wip_limit)

        def failed(code: str, message: str) -> None:
            self.wip.apply.setEnabled(True)
            self.message.emit(f"Could not set the WIP limit: {message}")

        self.requests.call("set_flow", {"wip_limit": limit}, on_ok=done, on_error=failed)

    @Slot(str, int)
    def submit_stage_limit(self, stage: str, limit: int) -> None:
        card = self.stage_strip.card(stage)
        card.apply.setEnabled(False)

        def done(result: protocol.FlowResult) -> None:
            card.apply.setEnabled(True)
            now = (result.stage_wip_limits or {}).get(stage, limit)
            card.spin.setValue(now)
            self.message.emit(f"WIP limit of {stage} now {now:,} stories." if now else f"WIP limit of {stage} lifted.")
            self.stage_limit_set.emit(stage, now)

        def failed(code: str, message: str) -> None:
            card.apply.setEnabled(True)
            self.message.emit(f"Could not set the WIP limit of {stage}: {message}")

        self.requests.call("set_flow", {"stage_wip_limits": {stage: limit}}, on_ok=done, on_error=failed)

    # -- aging work in progress ---------------------------------------------------------
    @Slot()
    def request_aging(self) -> None:
        if self._aging_in_flight or not self.isVisible() or self.paused or self.clock.latest is None:
            return
        offset, limit = oldest_page(self._open_total)
        self._aging_in_flight = True
        self.diagnostics.count("aging requests")
        self.pages.call("list_stories", {"status": "open", "offset": offset, "limit": limit},
                        on_ok=self._on_aging, on_error=self._on_aging_error)

    def _on_aging(self, result: protocol.ListStoriesResult) -> None:
        self._aging_in_flight = False
        self._open_total = result.total  # newer than the last stats, for the next page
        self.aging_total = result.total
        latest = self.clock.latest
        p85 = latest.lead_time_p85_s if latest is not None else None
        self.aging_state = aging(result.stories, self.clock.now(), p85, self.stage_names)
        self.aging_chart.show(self.aging_state)

    def _on_aging_error(self, code: str, message: str) -> None:
        self._aging_in_flight = False  # the next tick tries again; the stories tab reports list errors

    def aging_text(self) -> str:
        return aging_text(self.aging_state, self.aging_total, format_seconds)

    # -- drawing ------------------------------------------------------------------------
    @Slot()
    def _plot_tick(self) -> None:
        if not may_draw(self, self.paused):
            return
        self.diagnostics.count("ticks")
        self._draw(self.clock.now())
        self.diagnostics.count("frames")

    def _draw(self, now: float) -> None:
        since = now - self.window_s * 1.05 - 5  # a little more than the window: scrolling shows data
        if self._dirty:
            self._push_series(since)
        if self._dots_dirty and time.monotonic() - self._dots_at >= DOTS_EVERY_S:
            rows = self.completions.window(since, MAX_DOTS)
            rows = rows[np.isfinite(rows[:, self.measure.column])]  # (a cycle time may be missing)
            self.dots.set_data(rows[:, COMPLETED_AT], rows[:, self.measure.column])
            self._dots_dirty = False
            self._dots_at = time.monotonic()
        self.notes.draw()
        lo, now = time_span(now, self.window_s, self.buffer.first_ts)
        for plot, axis, grid in self.time_charts:
            scroll_chart(plot, axis, grid, lo, now)

    def _push_series(self, since: float) -> None:
        first, last, step = self.buffer.window(since, MAX_POINTS)
        col = self.buffer.column
        rows = stride(first, last, step)  # the same rows for every band edge: the bands stay stacked
        ts = col("ts")[rows]
        done, progress, arrived = cfd_edges(col("completed_stories")[rows], col("stories_in_progress")[rows],
                                            col("open_stories")[rows])
        self.bands["done"].set_data(ts, np.zeros_like(done), done)
        if self.stage_names and self.stage_series is not None:
            self.cfd_stage_edges = stage_edges(done, col("stories_in_progress")[rows], col("open_stories")[rows],
                                               self.stage_series.rows(rows, len(self.stage_names)))
            self.stage_bands.set_data(ts, self.cfd_stage_edges)
        else:
            self.bands["progress"].set_data(ts, done, progress)
        self.bands["waiting"].set_data(ts, progress, arrived)
        self.cfd_edges = (ts, done, progress, arrived)

        times = col("ts")[first:last]
        for name, curve in self.percentile_curves.items():  # (null before any completion: gaps)
            curve.set_data(times, col(self.measure.percentiles[name])[first:last], gaps=True)
        series = {
            "open_stories": col("open_stories")[first:last],
            "stories_in_progress": col("stories_in_progress")[first:last],
            "predicted_wip": self._predicted(first, last),
            "wip_limit": np.where(col("wip_limit")[first:last] > 0, col("wip_limit")[first:last], np.nan),
        }
        for name, curve in self.little_curves.items():
            x, y = peak_decimate(times, series[name], step) if name == "open_stories" else (times, series[name])
            curve.set_data(x, y, gaps=name != "open_stories")
        self._dirty = False

    @Slot()
    def _text_tick(self) -> None:
        stats = self.clock.latest
        if stats is None:
            return
        self.littles = littles_law(stats, float(self.coverage.covered(stats.ts, stats.flow_window_s or math.nan)))
        limit = f" / {stats.wip_limit:,}" if stats.wip_limit else ""
        self.numbers["open"].set_text(f"{stats.open_stories:,}")
        self.numbers["progress"].set_text(f"{stats.stories_in_progress:,}{limit}")
        predicted = self.littles.predicted
        self.numbers["predicted"].set_text("–" if predicted is None else f"{predicted:,.1f}")
        self.numbers["percentiles"].set_text(format_percentiles(stats, self.measure))
        if self.isVisible():
            self.stage_strip.show_stats(stats)
            text = format_littles(self.littles)
            aging_line = self.aging_text()
            text = f"{text}\n{aging_line}" if aging_line else text
            if self.readout.text() != text:
                self.readout.setText(text)
            self._update_y_ranges()

    def _predicted(self, first: int, last: int) -> np.ndarray:
        """Throughput × mean lead time for the buffered rows first..last, the throughput over the time counted."""
        col = self.buffer.column
        ts, window = col("ts")[first:last], col("flow_window_s")[first:last]
        return predicted_wip(col("stories_completed_in_window")[first:last], self.coverage.covered(ts, window),
                             col("lead_time_mean_s")[first:last])

    def _update_y_ranges(self) -> None:
        if not len(self.buffer):
            return
        ts = self.buffer.column("ts")
        left, right = self.cfd.viewRange()[0]
        start, end = np.searchsorted(ts, left), np.searchsorted(ts, right, side="right")
        if end <= start:
            return
        col = self.buffer.column
        done, _, arrived = cfd_edges(col("completed_stories")[start:end], col("stories_in_progress")[start:end],
                                     col("open_stories")[start:end])
        # The cumulative chart from just under its lowest point: the bands, not the
        # thousands done long ago, are what it is for.
        fit_y(self.cfd, float(done.min()), float(arrived.max()), zero_based=False)

        completed = self.completions.column(COMPLETED_AT)
        since = np.searchsorted(completed, left)
        times_taken = self.completions.column(self.measure.column)[since:]
        p95 = col(self.measure.percentiles["p95"])[start:end]
        top = max(float(np.nanmax(times_taken, initial=0.0)), float(np.nanmax(p95, initial=0.0)) if p95.size else 0.0)
        fit_y(self.lead_plot, 0.0, top)

        little = [col(n)[start:end] for n in ("open_stories", "stories_in_progress", "wip_limit")]
        little.append(self._predicted(start, end))
        fit_y(self.little_plot, 0.0, max(float(np.nanmax(v, initial=0.0)) for v in little))


def _chart_view(name: str) -> pg.GraphicsLayoutWidget:
    view = pg.GraphicsLayoutWidget()
    name_chart(view, CHART_NAMES[name], CHART_DESCRIPTIONS[name])
    # Room on the right for the last time label, half of one hanging over the end.
    view.ci.setContentsMargins(2, 2, math.ceil(view.fontMetrics().horizontalAdvance("00:00:00") / 2) + 4, 2)
    view.setMinimumWidth(100)
    # Whole repaints: in the time charts everything moves at every frame, and dots reach
    # past their item's bounds (they are pixels wide), so a partial repaint leaves specks.
    view.setViewportUpdateMode(QGraphicsView.ViewportUpdateMode.FullViewportUpdate)
    return view

