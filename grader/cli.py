"""The ``grade`` command: parse arguments, build one config, call the library, render, exit.

Kept light: importing this module imports click only, so ``grade --help`` is instant.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any
from pathlib import Path

import click

from grader.exitcodes import ExitCode
from grader.report.formats import FORMATS

FORMAT_CHOICES = FORMATS


def _ctrl_c_never_lost(previous: Callable[[Any], None]) -> Callable[[Any], None]:
    """An unraisable-exception hook for the command: Ctrl-C that lands where Python cannot raise it (a
    fork handler, such as logging's, running as a subprocess starts; a finaliser) would be printed as
    "Exception ignored in ..." with a traceback, and lost. It is raised again in the main thread instead,
    where the command says what it saved; anything else goes to ``previous``."""
    def hook(unraisable: Any) -> None:
        if unraisable.exc_type is not None and issubclass(unraisable.exc_type, KeyboardInterrupt):
            import _thread

            _thread.interrupt_main()
            return
        previous(unraisable)

    return hook


class _DefaultCommandGroup(click.Group):
    """``grade FILE ...`` runs the default command; ``grade release ...`` etc. run subcommands."""

    default_command = "submission"

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h", "--version"):
            args = [self.default_command, *args]
        return super().parse_args(ctx, args)

    def main(self, *args: Any, **kwargs: Any) -> Any:
        """click's own ``main``, but Ctrl-C where a command does not say more itself (reading the options,
        loading what the command needs) is one line and exit 130, never click's "Aborted!" and exit 1."""
        kwargs["standalone_mode"] = False  # click then raises what it would otherwise print and exit on
        sys.unraisablehook = _ctrl_c_never_lost(sys.unraisablehook)
        try:
            code = super().main(*args, **kwargs)
        except click.exceptions.Abort:  # click's word for Ctrl-C (and end of input at a prompt)
            click.echo("grade: interrupted", err=True)
            sys.exit(ExitCode.INTERRUPTED)
        except click.ClickException as e:
            e.show()
            sys.exit(e.exit_code)
        sys.exit(code if isinstance(code, int) else 0)  # --help, --version

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command: Ctrl-C while it runs is said here (click would add a blank line first)."""
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            click.echo("grade: interrupted", err=True)
            sys.exit(ExitCode.INTERRUPTED)

    def format_usage(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        formatter.write_usage("grade", "SUBMISSION [OPTIONS]")

    def format_help_text(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        formatter.write_paragraph()
        with formatter.indentation():
            formatter.write_text(
                "Grade SUBMISSION (a .ipynb notebook or a .py file) against the assignment's hidden "
                "reference and print a scored report. Run `grade submission --help` for all options.")
        with formatter.section("Exit codes"):
            formatter.write_dl([("0", "every check passed"), ("1", "some check failed, or the file could not be graded"),
                                ("2", "usage error"), ("3", "internal error of the grader"),
                                ("130", "interrupted (Ctrl-C)")])

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        sub = [(n, c) for n, c in self.commands.items() if n != self.default_command]
        if sub:
            with formatter.section("Other commands"):
                formatter.write_dl([(n, c.get_short_help_str()) for n, c in sub])
        cmd = self.commands[self.default_command]
        with formatter.section("Options for grading one submission"):
            formatter.write_dl([p.get_help_record(ctx) for p in cmd.params if p.get_help_record(ctx)])


@click.group(cls=_DefaultCommandGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="grader", prog_name="grade")
def main() -> None:
    """Grade students' PyTorch notebooks."""


@main.command("submission")
@click.argument("submission", type=click.Path(path_type=Path))
@click.option("--assignment", "-a", metavar="NAME", help="Assignment to grade against (default: from the "
              "notebook's metadata, else inferred from the classes it defines).")
@click.option("--format", "fmt", type=click.Choice(FORMAT_CHOICES), default="rich", show_default=True,
              help="Report format.")
@click.option("-o", "--output", type=click.Path(path_type=Path, dir_okay=False), metavar="FILE",
              help="Write the report in the chosen format to FILE (the table still goes to the terminal).")
@click.option("--timeout", type=click.FloatRange(min=1), metavar="SECONDS",
              help="Wall-clock limit for all of the submission's code [default: 120].")
@click.option("--case-timeout", type=click.FloatRange(min=1), metavar="SECONDS",
              help="Wall-clock limit for the top-level code and for each case [default: 30].")
@click.option("--sandbox", type=click.Choice(("auto", "bwrap", "none")), default=None,
              help="Isolation of the submission's code: bubblewrap, a plain subprocess, or bubblewrap when it "
                   "works here [default: $GRADER_SANDBOX or auto].")
@click.option("--memory-mb", type=click.IntRange(min=256), metavar="MB",
              help="Memory of all the submission's processes together (and each one's address space) [default: 4096].")
@click.option("--cpu-seconds", type=click.IntRange(min=1), metavar="S", help="CPU-time limit per process [default: 600].")
@click.option("--max-file-mb", type=click.IntRange(min=1), metavar="MB",
              help="Largest file the submission may write [default: 64].")
@click.option("--disk-mb", type=click.IntRange(min=1), metavar="MB",
              help="Everything the submission may write, all files together [default: 256].")
@click.option("--max-processes", type=click.IntRange(min=1), metavar="N",
              help="Processes the submission may start [default: 64].")
@click.option("--max-output-kb", type=click.IntRange(min=1), metavar="KB",
              help="Printed output kept (head and tail) [default: 64].")
@click.option("--max-tensor-mb", type=click.IntRange(min=1), metavar="MB",
              help="Largest tensor file a case may return [default: 64].")
@click.option("--root", type=click.Path(path_type=Path, file_okay=False, exists=True),
              help="Course folder holding assignments/ and reference/ [default: $GRADER_ROOT, else the course "
                   "around the current folder, else this checkout; never a folder beside SUBMISSION while one "
                   "of those exists].")
@click.option("--no-cache", is_flag=True, help="Recompute the reference's outputs instead of reusing the cache.")
@click.option("--audience", type=click.Choice(("instructor", "student")), default="instructor", show_default=True,
              help="Who reads the report: instructor (everything, hidden cases labelled) or student (hidden cases "
                   "by name, points and result only).")
def grade_one(submission: Path, assignment: str | None, fmt: str, output: Path | None, timeout: float | None,
              case_timeout: float | None, sandbox: str | None, memory_mb: int | None, cpu_seconds: int | None,
              max_file_mb: int | None, disk_mb: int | None, max_processes: int | None, max_output_kb: int | None,
              max_tensor_mb: int | None, root: Path | None, no_cache: bool, audience: str) -> None:
    """Grade one SUBMISSION (.ipynb or .py) and print its report."""
    from grader.config import GradeConfig
    from grader.config import Limits

    limits = {k: v for k, v in (("memory_mb", memory_mb), ("cpu_seconds", cpu_seconds), ("file_mb", max_file_mb),
                                ("disk_mb", disk_mb), ("processes", max_processes), ("output_kb", max_output_kb),
                                ("tensor_mb", max_tensor_mb)) if v is not None}
    overrides: dict = {"assignment": assignment, "use_cache": not no_cache, "sandbox": sandbox,
                       "limits": Limits(**limits)}
    if timeout is not None:
        overrides["timeout"] = timeout
    if case_timeout is not None:
        overrides["case_timeout"] = case_timeout
    if root is not None:
        overrides["root"] = root.resolve()
    config = GradeConfig(**overrides)
    sys.exit(run_and_report(submission, config, fmt, output, audience))


def guarded(action: Callable[[], int]) -> int:
    """Run a command's work: the one place exceptions become exit codes."""
    from grader.errors import GraderError, UsageError
    from grader.model.text import safe_text  # messages may quote a file's name or metadata

    try:
        return action()
    except UsageError as e:
        click.echo(f"grade: error: {safe_text(str(e))}", err=True)
        return ExitCode.USAGE_ERROR
    except Exception as e:  # a grader bug is never a student's zero
        click.echo(f"grade: internal error (a problem with the grader, not with the submission): {safe_text(str(e))}",
                   err=True)
        if not isinstance(e, GraderError):
            import traceback
            traceback.print_exc()
        return ExitCode.INTERNAL_ERROR


def run_and_report(submission: Path, config: "GradeConfig", fmt: str, output: Path | None,  # noqa: F821
                   audience: str = "instructor") -> int:
    """Grade, render for ``audience``, and choose the exit code."""
    from grader.pipeline import grade_submission
    from grader.report.audience import for_audience
    from grader.report.render import render, rich_renderable

    def work() -> int:
        report = for_audience(grade_submission(submission, config), audience)
        if output is not None:
            output.write_text(render(report, fmt, submission), encoding="utf-8")
        if fmt == "rich" or output is not None:
            from rich.console import Console
            Console(highlight=False).print(rich_renderable(report))
        else:
            click.echo(render(report, fmt, submission), nl=False)
        return ExitCode.OK if report.all_passed else ExitCode.CHECKS_FAILED

    return guarded(work)


def _course(root: Path | None) -> "Course":  # noqa: F821
    from grader.course.resolve import resolve_course
    return resolve_course(root)


_ROOT_OPTION = click.option("--root", type=click.Path(path_type=Path, file_okay=False, exists=True),
                            help="Course folder [default: $GRADER_ROOT, else the course around the current folder, else this checkout].")


@main.command("batch")
@click.argument("source", type=click.Path(path_type=Path, exists=True))
@click.option("--assignment", "-a", metavar="NAME", required=True, help="The assignment every submission is for.")
@click.option("--out", "out", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="Folder for the store, the gradebook and every student's feedback (re-running resumes).")
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=None, metavar="N",
              help="Submissions graded at once [default: the number of cores].")
@click.option("--regrade", is_flag=True, help="Grade every submission again, even those already in the store.")
@click.option("--student", metavar="ID", help="Grade only this student (again).")
@click.option("--id-regex", metavar="REGEX", help="Read each student's id (group 'id', optionally 'name') from "
              "their file or folder name with this regular expression, instead of the layout's rule.")
@click.option("--layout", type=click.Choice(("auto", "canvas", "moodle", "gradescope", "folder")), default="auto",
              show_default=True, help="The source's layout.")
@click.option("--timeout", type=click.FloatRange(min=1), metavar="SECONDS",
              help="Time limit for each submission's whole grading [default: 120].")
@click.option("--cold", is_flag=True, help="Start a fresh worker for every submission (paying the torch import "
              "each time) instead of forking it from a warm one per slot: slower; for comparison.")
@click.option("--scheduler", metavar="tcp://HOST:PORT", help="Grade on the Dask cluster of this scheduler "
              "(needs the grader's [dask] extra here and on every worker; see docs/dask.md) instead of in -j local "
              "processes. The store and every output stay here.")
@click.option("--chunk-size", type=click.IntRange(min=1), metavar="N", help="With --scheduler: submissions per "
              "Dask task [default: chosen from the class and the cluster's size, at most 16].")
@click.option("--allow-unsandboxed-workers", is_flag=True, help="With --scheduler: let Dask workers without a "
              "working bubblewrap grade, where their submissions can be given no network (the worker runs as "
              "root); otherwise such workers are never given work. See docs/dask.md.")
@click.option("--canvas-column", metavar='"NAME (ID)"', help="The assignment's column in canvas_import.csv, "
              "exactly as Canvas heads it in its own gradebook export, e.g. \"Multi-headed attention (123456)\" "
              "(Canvas matches the name and id) [default: the assignment's name].")
@click.option("--roster", type=click.Path(path_type=Path, dir_okay=False), metavar="CSV",
              help="Canvas's gradebook export (Grades → Export): canvas_import.csv then names each student as "
                   "Canvas does (matched by Canvas user id) instead of by their file's name.")
@_ROOT_OPTION
def batch_cmd(source: Path, assignment: str, out: Path, jobs: int | None, regrade: bool, student: str | None,
              id_regex: str | None, layout: str, timeout: float | None, cold: bool, scheduler: str | None,
              chunk_size: int | None, allow_unsandboxed_workers: bool, canvas_column: str | None, roster: Path | None,
              root: Path | None) -> None:
    """Grade every submission in SOURCE (a folder, a zip, an LMS export) into OUT, resumably."""
    from grader.batch.progress import progress_reporter
    from grader.batch.run import BatchOptions, Interrupted, run_batch
    from grader.batch.store import STORE_NAME, StoredResult
    from grader.config import GradeConfig
    from grader.model.text import safe_text

    if allow_unsandboxed_workers:
        if not scheduler:
            raise click.UsageError("--allow-unsandboxed-workers is for Dask workers: use it with --scheduler")
    saved = {"now": 0, "done": 0, "total": 0}  # what this run stored so far, for the words after Ctrl-C
    if canvas_column is not None and not canvas_column.strip():
        raise click.UsageError("--canvas-column is empty: give the column as Canvas heads it, e.g. "
                               "\"Multi-headed attention (123456)\"")

    def work() -> int:
        config = GradeConfig(root=root.resolve() if root else None, **({"timeout": timeout} if timeout else {}))
        canvas = None
        if canvas_column is not None or roster is not None:
            from grader.batch.gradebook import CanvasNames, read_roster
            canvas = CanvasNames((canvas_column or "").strip(), read_roster(roster) if roster else {})
        try:
            with progress_reporter(sys.stdout.isatty()) as progress:
                def counted(student_id: str, stored: StoredResult, done: int, total: int) -> None:
                    saved.update(now=saved["now"] + 1, done=done, total=total)
                    progress(student_id, stored, done, total)

                options = BatchOptions(jobs or os.cpu_count() or 1, regrade, student, id_regex, layout, not cold,
                                       scheduler, chunk_size, allow_unsandboxed_workers, canvas)
                result = run_batch(source, assignment, out, config, options, counted)
        except KeyboardInterrupt as stop:
            if isinstance(stop, Interrupted):  # counted from the store once the grading stopped
                saved.update(now=stop.graded_now, done=stop.in_store, total=stop.total)
            where = safe_text(str(out / STORE_NAME), one_line=True)
            tally = f" ({saved['done']} of {saved['total']} in the store)" if saved["now"] else ""
            n = saved["now"]
            if n:
                click.echo(f"grade: interrupted: {n} submission{'' if n == 1 else 's'} graded by this run "
                           f"{'is' if n == 1 else 'are'} saved in {where}{tally}; run the same command again to "
                           "grade the rest", err=True)
            else:
                click.echo("grade: interrupted before this run graded a submission; run the same command again to "
                           "grade them", err=True)
            return ExitCode.INTERRUPTED
        c = result.collected
        click.echo(f"{len(c.submissions)} submissions ({c.layout} layout), {len(result.graded)} graded now, "
                   f"{len(result.already_done)} already in the store; {len(c.skipped)} file{'' if len(c.skipped) == 1 else 's'} "
                   "skipped"
                   + (f"; {len(c.conflicts)} students claimed by more than one entry (not graded)" if c.conflicts
                      else ""))
        if result.graded and result.cluster:
            grading = [w for w in result.cluster if not w.refused]
            threads = sum(w.threads for w in grading)
            click.echo(f"cluster: {len(grading)} Dask workers at {safe_text(scheduler or '', one_line=True)}, "
                       f"{threads} grading processes, " + (f"{result.slots} with warm slots" if result.slots
                                                           else "a cold worker per submission"))
            for w in result.cluster:
                if w.refused:
                    click.echo(f"  {safe_text(w.address, one_line=True)}: never given work: "
                               f"{safe_text(w.refused, one_line=True)}")
                elif w.sandbox != "bwrap":
                    click.echo(f"  {safe_text(w.address, one_line=True)}: no working bubblewrap there: its submissions "
                               "ran in a plain subprocess with resource limits and no network, NOT sandboxed "
                               "(their reports say so)")
        for s in c.skipped:
            click.echo(f"  skipped {safe_text(str(s.path), one_line=True)}: {safe_text(s.reason, one_line=True)}")
        for k in c.conflicts:
            click.echo(f"  conflict over student {safe_text(k.student_id, one_line=True)}: "
                       f"{safe_text(k.reason, one_line=True)}")
        for r in result.internal:
            click.echo(f"  grader error on {safe_text(r.student_id, one_line=True)}: "
                       f"{safe_text(r.message, one_line=True)} (graded again by the next run)", err=True)
        click.echo(result.summary, nl=False)
        if result.flags is not None:
            click.echo(f"{len(result.flags)} pairs of students with alike code (over 80%, template code left out): "
                       f"{out / 'similarity.csv'}")
        else:
            click.echo("similarity flags not computed: pip install copydetect (the grader's [batch] extra)")
        click.echo(f"wrote {out / 'gradebook.csv'}, {out / 'canvas_import.csv'}, {out / 'class.html'} and "
                   f"{sum(p.parent.name == 'feedback' for p in result.outputs)} feedback files in {out / 'feedback'}")
        return ExitCode.INTERNAL_ERROR if result.internal else ExitCode.OK

    sys.exit(guarded(work))


@main.command("release")
@click.argument("assignment")
@click.option("--out", "out", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="Folder to write the student bundle to.")
@click.option("--force", is_flag=True, help="Release even when a graded class has no solution marker or the "
              "template earns points (the bundle may then contain the solution). Broken markers still refuse.")
@_ROOT_OPTION
def release_cmd(assignment: str, out: Path, root: Path | None, force: bool = False) -> None:
    """Write ASSIGNMENT's student bundle: notebook, public case fixtures, no reference."""
    from grader.course.assignments import get_assignment
    from grader.config import GradeConfig
    from grader.authoring.release import release

    def work() -> int:
        a = get_assignment(_course(root), assignment)
        paths = release(a, out, GradeConfig(), force=force)
        if paths.overridden:
            from grader.model.text import safe_text
            click.echo(safe_text(f"grade: WARNING: --force released {a.name} despite:"
                                 + "".join(f"\n  {o}" for o in paths.overridden)
                                 + f"\nTHE BUNDLE IN {out} MAY CONTAIN THE SOLUTION: check it before giving it "
                                 "to students."), err=True)
        public = sum(c.points for c in a.cases if not c.hidden)
        click.echo(f"released {a.name} to {out}:\n  {paths.notebook}\n  {paths.cases}\n  {paths.fixtures}\n"
                   f"  {paths.records}\n{public:g} public points, {a.max_score - public:g} hidden points")
        return ExitCode.OK

    sys.exit(guarded(work))


@main.command("package")
@click.argument("target", type=click.Choice(("gradescope", "github-classroom")))
@click.argument("assignment")
@click.option("-o", "--out", "out", type=click.Path(path_type=Path), required=True,
              help="gradescope: the autograder zip to write (autograder.zip); github-classroom: a new or empty "
              "folder for the template repository's files.")
@click.option("--hidden", "hidden_as", type=click.Choice(("after_due_date", "after_published", "hidden")),
              default="after_due_date", show_default=True,
              help="When students see a hidden case's result on Gradescope (never its inputs or output).")
@_ROOT_OPTION
def package_cmd(target: str, assignment: str, out: Path, hidden_as: str, root: Path | None) -> None:
    """Package ASSIGNMENT's grader for TARGET: a Gradescope autograder zip, or a GitHub Classroom template repository."""
    from grader.authoring.package import github_classroom, gradescope
    from grader.config import GradeConfig
    from grader.course.assignments import get_assignment

    def work() -> int:
        a = get_assignment(_course(root), assignment)
        if target == "github-classroom":
            files = github_classroom(a, out, GradeConfig())
            click.echo(f"wrote {len(files)} files to {out}: {a.name}'s template notebook, its public cases and "
                       "fixtures, the grader (.grader/) and .github/workflows/grade.yml. Push them as the template "
                       "repository; only public cases are there (hidden ones cannot stay hidden in a student's "
                       "repository): grade those with `grade batch` over the students' repositories.")
            return ExitCode.OK
        names = gradescope(a, out, GradeConfig(), hidden_as)
        click.echo(f"wrote {out}: {len(names)} files (setup.sh, run_autograder, the grader, {a.name}'s cases, "
                   f"reference and precomputed outputs); hidden cases show {hidden_as.replace('_', ' ')}. "
                   "Upload it as the assignment's autograder; it holds the reference, so never give it to students.")
        return ExitCode.OK

    sys.exit(guarded(work))


@main.command("validate")
@click.argument("assignments", nargs=-1)
@click.option("--update", is_flag=True, help="Rewrite the committed template and public fixtures first.")
@_ROOT_OPTION
def validate_cmd(assignments: tuple[str, ...], update: bool, root: Path | None) -> None:
    """Check ASSIGNMENTS (default: all): reference full marks, template 0, files match a release."""
    from grader.course.assignments import assignment_names, get_assignment
    from grader.config import GradeConfig
    from grader.authoring.validate import validate

    def work() -> int:
        course = _course(root)
        click.echo(f"course: {course.describe()}")
        failed = False
        for name in assignments or assignment_names(course.root):
            a = get_assignment(course, name)
            click.echo(f"{a.name}: cases from {a.cases_file}")
            for f in validate(a, GradeConfig(root=course.root), update):
                failed |= not f.ok
                click.echo(f"{'ok  ' if f.ok else 'FAIL'} {f.assignment}: {f.check}"
                           + (f" — {f.detail}" if f.detail else ""))
        return ExitCode.CHECKS_FAILED if failed else ExitCode.OK

    sys.exit(guarded(work))


if __name__ == "__main__":  # pragma: no cover
    main()
