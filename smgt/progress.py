"""Rendering batches with rich: the detail as one table per level, a list page, and a live watch.

Inputs are the API's JSON answers (``BatchDetail`` / ``BatchList`` wire shapes of
services/common/batches.py) as plain dicts, so nothing here imports the services.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:  # pragma: no cover
    from smgt.client import SmgtClient

Detail = Mapping[str, Any]

# Our statuses (batch, level, job) and SageMaker's labeling job statuses.
STATUS_STYLES: dict[str, str] = {
    "IN_PROGRESS": "cyan",
    "LAUNCHING": "cyan",
    "PENDING": "dim",
    "COMPLETE": "bold green",
    "COMPLETED": "green",
    "COMPLETED_WITH_ERRORS": "bold yellow",
    "FAILED": "bold red",
    "CANCELLED": "magenta",
    "STOPPED": "magenta",
    "SKIPPED": "dim",
    "ENDED": "green",
    "Initializing": "cyan",
    "InProgress": "cyan",
    "Stopping": "magenta",
    "Stopped": "magenta",
    "Completed": "green",
    "Failed": "red",
}

_ORDINAL_KEYS = {1: "firstLevel", 2: "secondLevel", 3: "thirdLevel"}


def status_text(status: Any) -> Text:
    """A status coloured by what it means (green ended well, red failed, cyan running...)."""
    if status is None or status == "":
        return Text("-", style="dim")
    value = str(status)
    return Text(value, style=STATUS_STYLES.get(value, ""))


def _labeled(job: Mapping[str, Any]) -> str:
    done, total = job.get("numFramesCompleted"), job.get("numFrames")
    if done is None and total is None:
        return "-"
    text = f"{done or 0}/{total}" if total else str(done or 0)
    counters = job.get("labelCounters") or {}
    failed = counters.get("failed_non_retryable_error")
    if failed:
        text += f" ({failed} failed)"
    return text


def _levels(detail: Detail) -> list[Mapping[str, Any]]:
    levels = detail.get("levels")
    if levels is None:  # older answers: only the ordinal keys
        levels = [detail[k] for k in _ORDINAL_KEYS.values() if detail.get(k)]
    return sorted(levels, key=lambda lv: int(lv.get("level", 0)))


def _job_table() -> Table:
    table = Table(expand=False, show_edge=True, header_style="bold")
    table.add_column("Job", no_wrap=True)
    table.add_column("Modality")
    table.add_column("Status", no_wrap=True)
    table.add_column("SageMaker", no_wrap=True)
    table.add_column("Labeled", justify="right", no_wrap=True)
    table.add_column("Failure reason", overflow="fold")
    return table


def _level_table(level: Mapping[str, Any]) -> Table:
    table = _job_table()
    total = level.get("numChildBatches", 0)
    ended = level.get("numChildBatchesComplete", 0)
    failed = level.get("numChildBatchesFailed", 0)
    title = Text.assemble(
        (f"Level {level.get('level')} ", "bold"),
        status_text(level.get("status")),
        f"  {ended}/{total} jobs ended",
        (f", {failed} failed", "red") if failed else "",
    )
    table.title = title
    table.title_justify = "left"
    for job in level.get("jobLevels") or []:
        table.add_row(
            Text(str(job.get("jobName", "?"))),
            Text(str(job.get("jobModality") or "-")),
            status_text(job.get("status")),
            status_text(job.get("sagemakerStatus")),
            _labeled(job),
            Text(str(job.get("failureReason") or ""), style="red"),
        )
    return table


def _pending_level_table(number: int, jobs: list[Mapping[str, Any]]) -> Table:
    """A level the coordinator has not started yet: its jobs as requested."""
    table = _job_table()
    table.title = Text.assemble((f"Level {number} ", "bold"), status_text("PENDING"), "  not started")
    table.title_justify = "left"
    for job in jobs:
        table.add_row(
            Text(str(job.get("jobName", "?"))),
            Text(str(job.get("jobModality") or "-")),
            status_text("PENDING"),
            status_text(None),
            "-",
            Text(""),
        )
    return table


def render_header(detail: Detail) -> Text:
    header = Text.assemble(
        ("Batch ", "bold"),
        (str(detail.get("batchId", "?")), "bold"),
        "  ",
        status_text(detail.get("status")),
        f"  level {detail.get('currentLevel', 0)}/{detail.get('numLevels', '?')}",
    )
    if detail.get("failurePolicy"):
        header.append(f"  policy {detail['failurePolicy']}", style="dim")
    if detail.get("updatedAt"):
        header.append(f"  updated {detail['updatedAt']}", style="dim")
    if detail.get("failureReason"):
        header.append("\n")
        header.append(f"Failure reason: {detail['failureReason']}", style="red")
    return header


def render_batch(detail: Detail) -> RenderableType:
    """The batch detail: a header (id, status, current level/levels) and one job table per level."""
    parts: list[RenderableType] = [render_header(detail)]
    levels = _levels(detail)
    shown = {int(lv.get("level", 0)) for lv in levels}
    for level in levels:
        parts.append(_level_table(level))
    requested = detail.get("inputLabelingJobs") or []
    try:
        num_levels = int(detail.get("numLevels") or 0)
    except (TypeError, ValueError):
        num_levels = 0
    for number in range(1, num_levels + 1):
        if number in shown:
            continue
        jobs = [j for j in requested if isinstance(j, Mapping) and int(j.get("jobLevel", 0) or 0) == number]
        parts.append(_pending_level_table(number, jobs))
    return Group(*parts)


def render_list(page: Mapping[str, Any]) -> RenderableType:
    """A page of ``GET /batch/show`` without a batch id: one row per batch, the next token if any."""
    table = Table(header_style="bold")
    table.add_column("Batch", no_wrap=True)
    table.add_column("Status", no_wrap=True)
    table.add_column("Level", justify="right", no_wrap=True)
    table.add_column("Created", no_wrap=True)
    batches = page.get("batches") or []
    for batch in batches:
        table.add_row(
            Text(str(batch.get("batchId", "?"))),
            status_text(batch.get("status")),
            f"{batch.get('currentLevel', 0)}/{batch.get('numLevels', '?')}",
            str(batch.get("createdAt") or "-"),
        )
    if not batches:
        table.caption = "no batches"
    if page.get("nextToken"):
        table.caption = f"more: --next-token {page['nextToken']}"
    return table


# ---- watching -----------------------------------------------------------------------------


def _job_key(job: Mapping[str, Any]) -> tuple[Any, ...]:
    return (
        job.get("status"),
        job.get("sagemakerStatus"),
        job.get("numFramesCompleted"),
        job.get("numFrames"),
        job.get("failureReason"),
    )


def _job_line(batch_id: str, level: Any, job: Mapping[str, Any]) -> Text:
    line = Text.assemble(
        f"{batch_id} level {level} ",
        (str(job.get("jobName", "?")), "bold"),
        ": ",
        status_text(job.get("status")),
    )
    if job.get("sagemakerStatus"):
        line.append(" (SageMaker ")
        line.append_text(status_text(job.get("sagemakerStatus")))
        line.append(")")
    labeled = _labeled(job)
    if labeled != "-":
        line.append(f" labeled {labeled}")
    if job.get("failureReason"):
        line.append(f" - {job['failureReason']}", style="red")
    return line


def _batch_line(detail: Detail) -> Text:
    line = Text.assemble(
        f"{detail.get('batchId', '?')}: ",
        status_text(detail.get("status")),
        f" level {detail.get('currentLevel', 0)}/{detail.get('numLevels', '?')}",
    )
    if detail.get("failureReason"):
        line.append(f" - {detail['failureReason']}", style="red")
    return line


class ChangePrinter:
    """For a non-terminal output (CI logs): one line per change of the batch or of one of its jobs."""

    def __init__(self, console: Console):
        self.console = console
        self._batch: tuple[Any, ...] | None = None
        self._jobs: dict[tuple[Any, str], tuple[Any, ...]] = {}

    def lines(self, detail: Detail) -> list[Text]:
        out: list[Text] = []
        batch_key = (detail.get("status"), detail.get("currentLevel"), detail.get("failureReason"))
        batch_id = str(detail.get("batchId", "?"))
        for level in _levels(detail):
            for job in level.get("jobLevels") or []:
                key = (level.get("level"), str(job.get("jobName")))
                if self._jobs.get(key) != _job_key(job):
                    self._jobs[key] = _job_key(job)
                    out.append(_job_line(batch_id, level.get("level"), job))
        if batch_key != self._batch:
            first = self._batch is None
            self._batch = batch_key
            # the batch line opens the first poll's lines and closes later ones (it ends after its jobs)
            if first:
                out.insert(0, _batch_line(detail))
            else:
                out.append(_batch_line(detail))
        return out

    def __call__(self, detail: Detail) -> None:
        for line in self.lines(detail):
            self.console.print(line, highlight=False, soft_wrap=True)


def watch_live(
    client: SmgtClient,
    batch_id: str,
    interval: float = 2.0,
    console: Console | None = None,
    timeout: float | None = None,
) -> dict[str, Any]:
    """Watch a batch until it ends; the final detail.

    On a terminal: a rich Live view of ``render_batch`` (left on screen at the end). Otherwise
    (CI, pipes): one line per change, then the final tables once.
    """
    console = console or Console()
    if console.is_terminal and not console.is_dumb_terminal:
        with Live(console=console, transient=False, auto_refresh=False) as live:

            def update(detail: Detail) -> None:
                live.update(render_batch(detail), refresh=True)

            return client.watch(batch_id, interval=interval, timeout=timeout, on_update=update)
    printer = ChangePrinter(console)
    final = client.watch(batch_id, interval=interval, timeout=timeout, on_update=printer)
    console.print(render_batch(final))
    return final
