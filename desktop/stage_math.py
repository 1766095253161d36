"""The workflow's arithmetic for the Flow tab, apart from Qt so that it can be tested directly.

- which stages a server runs (the `stages` of its stats; one stage, or none
  from an older server, is "no workflow": the tab looks as it always did);
- the stories in each stage over time, kept row for row beside the tab's
  other series, and the edges of the cumulative flow diagram's bands: done,
  each stage from the last to the first, waiting;
- how the figures read: flow efficiency, the bottleneck, a stage's pool.
"""

from __future__ import annotations

import math
import numpy as np

from storypulse import protocol

# Band colours for stages 1, 2, 3, 4, 5, ... (theme.SERIES roles): every two neighbours
# stay apart for colour-blind eyes, the first beside the waiting band (orange) and the
# last beside the done band (purple) too, whatever the number of stages (the theme test
# checks every count up to the protocol's limit).
STAGE_ROLES = ("stage_1", "stage_2", "stage_3", "stage_2")


def stage_role(index: int) -> str:
    return STAGE_ROLES[index % len(STAGE_ROLES)]


def stages_of(stats) -> tuple:
    """The stages of a stats row (an older server's, or a test's plain row, has none)."""
    return tuple(getattr(stats, "stages", None) or ())


def stage_names(stats) -> tuple[str, ...]:
    """The workflow's stages in order, when there is one (more than one stage); else ()."""
    stages = stages_of(stats)
    return tuple(s.name for s in stages) if len(stages) > 1 else ()


class StageSeries:
    """The stories in each stage, one row per row of the Flow tab's SeriesBuffer, oldest first.

    The tab appends a row here exactly when its buffer kept one, so row i here is
    row i there: the bands of the cumulative flow diagram come from both. Made on
    the first row with a workflow; the rows the buffer kept before then are NaN
    (no split known). Stored as float32: at most STAGES_MAX columns of small counts.
    """

    def __init__(self, capacity: int, rows_before: int = 0):
        self.capacity = capacity
        self._data = np.full((2 * capacity, protocol.STAGES_MAX), np.nan, dtype=np.float32)
        self._start = 0
        self._end = min(rows_before, capacity)  # NaN rows, in step with the buffer

    def __len__(self) -> int:
        return self._end - self._start

    def append(self, stats) -> None:
        if self._end == len(self._data):
            keep = self._end - self._start
            self._data[:keep] = self._data[self._start:self._end]
            self._start, self._end = 0, keep
        row = self._data[self._end]
        row[:] = np.nan
        stages = stages_of(stats)[:protocol.STAGES_MAX]
        if stages:
            row[:len(stages)] = [s.stories for s in stages]
        self._end += 1
        if self._end - self._start > self.capacity:
            self._start += 1

    def rows(self, index: np.ndarray, count: int) -> np.ndarray:
        """The stories per stage (rows × `count` stages, float) at the buffer's row indexes `index`."""
        return self._data[self._start:self._end][index, :count].astype(float)


def stage_edges(done: np.ndarray, in_progress: np.ndarray, open_: np.ndarray,
                stories: np.ndarray) -> list[np.ndarray]:
    """The band edges of a cumulative flow diagram with stages, bottom to top.

    `stories`: rows × stages, in workflow order. Returns done, then the top of
    the last stage, ..., of the first stage (= done + in progress), then
    done + open (= arrived): len(stages) + 2 edges. In progress is clipped to
    the open count, and the stages to in progress, so no band is ever negative;
    a row without a split (NaN) shows all its stories in progress in the first stage.
    """
    done = np.asarray(done, dtype=float)
    open_ = np.maximum(np.asarray(open_, dtype=float), 0.0)
    progress = np.clip(np.nan_to_num(np.asarray(in_progress, dtype=float)), 0.0, open_)
    later = np.nan_to_num(np.asarray(stories, dtype=float)[:, :0:-1])  # the last stage first, the first left out
    tops = np.minimum(np.cumsum(np.maximum(later, 0.0), axis=1), progress[:, None])
    return [done, *(done + tops[:, j] for j in range(tops.shape[1])), done + progress, done + open_]


# -- how the figures read ------------------------------------------------------------
def format_efficiency(value: float | None) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{100 * value:.0f} %"


def format_wait(seconds: float) -> str:
    if seconds >= 1e6:
        return "no worker"
    return f"{seconds:,.1f} s" if seconds < 100 else f"{seconds:,.0f} s"


def bottleneck_text(stats) -> str:
    """The bottleneck named (short: it shares a card with the flow efficiency)."""
    name = getattr(stats, "bottleneck", None)
    return f"bottleneck: {name}" if name else "no bottleneck"


def bottleneck_detail(stats) -> str:
    """Why the bottleneck is named: how long its ready work waits for a worker."""
    name = getattr(stats, "bottleneck", None)
    if not name:
        return "No stage has ready work waiting for a worker."
    wait = next((s.wait_s for s in stages_of(stats) if s.name == name), 0.0)
    return (f"The bottleneck is the stage whose ready work waits longest for a worker now: {name}, "
            f"where a task joining the queue waits ~{format_wait(wait)} (its ready work over its workers).")


def pool_text(stage) -> str:
    """A stage's pool and work in one short line: busy of its workers, queued, blocked."""
    text = f"{stage.workers_busy}/{stage.workers} busy · {stage.tasks_queued:,} queued"
    if stage.tasks_blocked:
        text += f" · {stage.tasks_blocked:,} blocked"
    return text


def pool_detail(stage) -> str:
    """The same at length, for a tooltip and screen readers."""
    return (f"{stage.workers} workers ({stage.min_workers}–{stage.max_workers}), {stage.workers_busy} busy; "
            f"{stage.tasks_queued:,} tasks queued, {stage.tasks_ready:,} of them ready to start here; "
            f"{stage.tasks_running:,} running, {stage.tasks_blocked:,} blocked")


def stories_text(stage) -> str:
    """The stories in a stage against its WIP limit."""
    limit = f" / {stage.wip_limit:,}" if stage.wip_limit else ""
    return f"{stage.stories:,}{limit} " + ("story" if stage.stories == 1 and not stage.wip_limit else "stories")
