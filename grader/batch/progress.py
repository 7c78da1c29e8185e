"""How a batch shows its progress: a rich bar on a terminal (done/total, rate, time left, what did not
grade cleanly), a plain line per submission elsewhere (a log, CI)."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import click

from grader.batch.run import Progress
from grader.batch.store import StoredResult
from grader.model.text import safe_text


@contextlib.contextmanager
def progress_reporter(terminal: bool) -> Iterator[Progress]:
    """The callback ``run_batch`` calls as each submission finishes."""
    if not terminal:
        def line(student: str, stored: StoredResult, done: int, total: int) -> None:
            score = f" {stored.score:g}/{stored.max_score:g}" if stored.score is not None else ""
            click.echo(f"[{done}/{total}] {safe_text(student, one_line=True)}: {stored.status}{score} "
                       f"({stored.seconds:.1f} s)")
        yield line
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress as Bar, TaskProgressColumn, TextColumn
    from rich.progress import TimeRemainingColumn

    failures = 0
    with Bar(TextColumn("grading"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
             TextColumn("{task.fields[speed_text]}"), TimeRemainingColumn(), TextColumn("{task.fields[note]}")) as bar:
        task = bar.add_task("grading", total=None, note="", speed_text="")

        def update(student: str, stored: StoredResult, done: int, total: int) -> None:
            nonlocal failures
            failures += stored.status != "graded"
            speed = bar.tasks[0].speed
            bar.update(task, completed=done, total=total, note=f"{failures} not graded cleanly",
                       speed_text=f"{speed * 60:.0f}/min" if speed else "")
        yield update
