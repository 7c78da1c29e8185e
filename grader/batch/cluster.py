"""``grade batch --scheduler ADDRESS``: the batch's grading on a Dask cluster (``dask.distributed``).

    the batch (a Dask client)                        each Dask worker
    check every worker: ``environment``  ──run──▶    python, torch, the grader, its sandbox
    register a ``CoursePlugin`` (the course) ──▶     setup, once per worker: unpack the course and
                                                     its reference outputs; a ``Pool`` of nthreads
                                                     grading processes (warm slots); then offer
                                                     the resource NAME = nthreads
    submit chunks of submissions (their bytes) ──▶   ``grade_chunk``: each through the Pool
    as each chunk finishes: store.put   ◀─────────   [(index, Graded)]
    unregister the plugin  ──────────────────────▶   teardown: the Pool closed, the copy removed

Only this module imports Dask, and only ``grade batch --scheduler`` imports it. The grading on a
worker is the local path's own (``grader.batch.workers``: grading processes, warm slots, the
same sandbox), so a report made there equals one made here, naming the client's file and course
(``workers.Shown``). A worker is offered work only once its plugin checked its environment
against the client's and started its pool (its resource NAME), so a worker that joins later
with another torch or grader never grades. ``Cluster.check`` refuses the batch when any worker
connected at the start differs.

No submission may reach the scheduler, the client or another worker (whoever reaches the
scheduler runs code on every worker). So a worker without a working bubblewrap is never given
work (``refusal``) unless the instructor allows it (``--allow-unsandboxed-workers``), and even
then only where its submissions get an empty network namespace and a uid of their own (the
grader runs as root there: ``grader.execute.sandbox.none_network``); the batch stops (exit 2)
when no worker is left. A scheduler that goes away mid-batch stops it too (exit 2,
``SCHEDULER_GONE``): what was graded is in the store, and the same command resumes.

What is retried and what is not: a student's timeout, crash or memory blow-up is a result
(``grade_chunk`` returns it) and is never run again. A worker that dies mid-task (its machine
lost, its process killed) is Dask's to retry, up to ``distributed.scheduler.allowed-failures``
times; a chunk that still fails that way is split in halves, down to single submissions, and
each single one that fails so is run once more at the end with nothing else in flight: when
the worker dies again, that submission is recorded as ``error`` (``machine_lost_report``),
otherwise its result stands. Any other failure of a task is the grader's own: ``internal``.
"""
from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import io
import logging
import platform
import shutil
import tarfile
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import CancelledError
from dataclasses import dataclass, replace
from importlib import metadata
from pathlib import Path
from typing import Any

from distributed import Client, Future, WorkerPlugin, get_worker, wait
from distributed.comm import CommClosedError
from distributed.scheduler import KilledWorker

from grader.batch.chunks import Chunk, Chunks, make_chunks
from grader.batch.entries import prepare
from grader.batch.workers import Graded, Pool, Shown, Task, as_graded, failed
from grader.config import GradeConfig
from grader.course.bundle import write_bundle
from grader.errors import UsageError
from grader.execute.sandbox import none_network, not_requested_reason, requested_mode, resolve_mode
from grader.pipeline import machine_lost_report
from grader.plan.submission import size_cap
from grader.spec.cases import Assignment

logger = logging.getLogger("grader.batch.cluster")

#: Names of this grader's worker plugins (and of the resource each offers): the prefix and the client's id.
PLUGIN_PREFIX = "grader-batch-"
#: How long to wait for a first worker, and for any worker able to grade (the scheduler: Dask's
#: ``distributed.comm.timeouts.connect``, 30 s unless configured).
WAIT_SECONDS = 120.0
#: How often the batch looks at the cluster while no task finishes; the least time without any chunk
#: finishing after which it stops (more for larger chunks and longer submission time limits).
POLL_SECONDS = 2.0
STALL_SECONDS = 600.0
#: How long fetching a finished chunk's results may take before the chunk is submitted again.
FETCH_SECONDS = 60.0
#: How long a worker's plugin waits for the scheduler when it is removed (after its pool is stopped).
TEARDOWN_SECONDS = 10.0
#: The client's environment variable that ``--allow-unsandboxed-workers`` sets: "1" allows workers without
#: bubblewrap whose submissions get no network (``refusal``).
#: What the batch says when its scheduler goes away (the one wording, for every place that finds it out).
SCHEDULER_GONE = ("the Dask scheduler at {address} went away; what was graded is kept: start it again and run "
                  "the same command")


class ClusterError(UsageError):
    """The cluster cannot do the batch's work (unreachable, mismatched, lost). What was graded is kept."""


@dataclass(frozen=True)
class WorkerFacts:
    """One Dask worker, as checked at the start: its address, threads and sandbox mode ('bwrap' or 'none');
    ``refused``: why it is never given work (empty: it grades)."""

    address: str
    threads: int
    sandbox: str
    refused: str = ""


@dataclass(frozen=True)
class Item:
    """One submission sent to a worker: its bytes, or only its size when it is over the reader's cap
    (the worker then makes a sparse file of that size, which the reader refuses exactly as here);
    size -1: the client could not read it (``shown`` says why)."""

    index: int
    name: str
    data: bytes | None
    size: int
    #: what its report calls it (``workers.Task.shown``: the student's own file on the client)
    shown: str
    #: why the client could not read it (with size -1)
    error: str = ""


# --------------------------------------------------------------------------- both sides


@functools.lru_cache(maxsize=1)
def grader_identity() -> str:
    """The grader's version and a hash of its own source files: equal on two machines only when they
    run the same grader (a checkout with local changes differs from the release it came from)."""
    package = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        h.update(str(path.relative_to(package)).encode() + b"\0" + path.read_bytes() + b"\0")
    try:
        version = metadata.version("grader")
    except metadata.PackageNotFoundError:
        version = "not installed"
    return f"{version} ({h.hexdigest()[:12]})"


def environment(requested: str) -> dict[str, str]:
    """What this machine would grade with: Python, torch, the grader, and the sandbox ``requested``
    resolves to here ('bwrap', 'none', or why it is refused); with 'none', why there is no bubblewrap
    ('unsandboxed') and why its submissions would keep the network ('network', empty: they would not).
    Runs on every worker (``Client.run``)."""
    try:
        sandbox = resolve_mode(requested)
    except UsageError as e:
        sandbox = f"refused ({e})"
    try:
        torch = metadata.version("torch")
    except metadata.PackageNotFoundError:
        torch = "not installed"
    found = {"python": ".".join(platform.python_version_tuple()[:2]), "torch": torch, "grader": grader_identity(),
             "sandbox": sandbox}
    if sandbox == "none":
        found["unsandboxed"] = not_requested_reason() or "a sandbox of 'none' was asked for"
        found["network"] = none_network() or ""
    return found


def mismatches(ours: dict[str, str], theirs: dict[str, str]) -> list[str]:
    """What in a worker's ``environment`` keeps it from grading like this machine, in words; empty when nothing."""
    found = [f"{what} {theirs.get(what, '?')} (this machine: {ours[what]})"
             for what in ("python", "torch", "grader") if theirs.get(what) != ours[what]]
    if theirs.get("sandbox", "").startswith("refused"):
        found.append(f"sandbox {theirs['sandbox']}")
    return found


def refusal(theirs: dict[str, str], allow_unsandboxed: bool) -> str:
    """Why a worker like this machine is still never given work, in words; empty when it may grade.

    Without bubblewrap a submission runs as a plain process on the worker's machine: with the
    network, it could reach the scheduler (whose address is on its Dask worker's command line) and
    through it run code on every worker and forge any result. So such a worker grades only when the
    instructor allows it, and only where its submissions get no network and a uid of their own (the
    grader runs as root there); never otherwise, even when allowed: a submission running as the Dask
    worker's own user could also take over the worker's process or its Python files."""
    if theirs.get("sandbox") != "none":
        return ""
    why = theirs.get("unsandboxed") or "no working bubblewrap"
    if not allow_unsandboxed:
        return (f"no working bubblewrap ({why}): install it there (docs/dask.md), or pass "
                "--allow-unsandboxed-workers to grade there without it")
    if theirs.get("network"):
        return (f"no working bubblewrap ({why}), and without it its submissions would keep the network "
                f"({theirs['network']}): install bubblewrap there, or run the worker as root")
    return ""


# --------------------------------------------------------------------------- the worker's side


class CoursePlugin(WorkerPlugin):
    """The batch's course and grading pool on one worker; made once per worker (and again on a
    restarted one), removed at the batch's end."""

    def __init__(self, name: str, bundle: bytes, config: GradeConfig, warm: bool, expected: dict[str, str],
                 course_shown: str, allow_unsandboxed: bool = False):
        self.name = name
        self.bundle = bundle
        self.client_config = config
        self.warm = warm
        self.expected = expected
        self.course_shown = course_shown
        self.allow_unsandboxed = allow_unsandboxed
        self.pool: Pool | None = None
        self.config: GradeConfig | None = None
        self.folder: Path | None = None

    def __getstate__(self) -> dict[str, Any]:  # what travels: never a worker's pool
        return {**self.__dict__, "pool": None, "config": None, "folder": None}

    async def setup(self, worker: Any) -> None:
        env = environment(self.client_config.sandbox or "auto")
        problems = mismatches(self.expected, env) or [p for p in [refusal(env, self.allow_unsandboxed)] if p]
        if problems:
            logger.warning("%s will not grade on this worker: %s", self.name, "; ".join(problems))
            return
        threads = max(1, int(worker.state.nthreads))
        folder = Path(worker.local_directory) / self.name
        await asyncio.to_thread(self._start, folder, threads, env["sandbox"], Path(worker.local_directory))
        await worker.set_resources(**{self.name: threads})

    def _start(self, folder: Path, threads: int, mode: str, local: Path) -> None:
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        folder.chmod(0o700)  # closed to the submissions' own uid, where they run without bubblewrap as root
        (folder / "work").mkdir()
        with tarfile.open(fileobj=io.BytesIO(self.bundle), mode="r:gz") as tar:
            if hasattr(tarfile, "data_filter"):
                tar.extractall(folder / "bundle", filter="data")
            else:  # Python < 3.10.12: our own archive, made by ``Cluster``
                tar.extractall(folder / "bundle")  # noqa: S202
        # the mode checked here, pinned: a grading process never resolves to another one by itself
        self.config = replace(self.client_config, root=folder / "bundle" / "course",
                              cache_dir=folder / "bundle" / "cache", sandbox=mode)
        self.folder = folder
        # hidden from the sandbox: the course, the submissions, and the rest of the worker's directory
        self.pool = Pool(threads, self.warm and mode == "bwrap", self.config.limits, (folder, local))

    async def teardown(self, worker: Any) -> None:
        """Stop the pool (a grade in flight is dropped, nothing is started again), then stop offering the
        resource; the pool first, so that a scheduler gone (which the second asks) leaves no process."""
        if self.pool is None:
            return
        await asyncio.to_thread(self._stop)
        try:
            await asyncio.wait_for(worker.set_resources(**{self.name: 0}), TEARDOWN_SECONDS)
        except (OSError, asyncio.TimeoutError) as e:  # the scheduler is gone or unreachable: nothing to tell it
            logger.info("%s: could not withdraw the resource from the scheduler: %s", self.name, e)

    def _stop(self) -> None:
        pool, self.pool = self.pool, None
        if pool is not None:
            pool.close()
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)


def grade_chunk(name: str, items: list[Item]) -> list[tuple[int, Graded]]:
    """A task: grade ``items`` on this worker, one after another, in a grading process of its pool."""
    plugin = get_worker().plugins.get(name)
    if not isinstance(plugin, CoursePlugin) or plugin.pool is None or plugin.folder is None:
        raise RuntimeError(f"this worker has no grading pool for {name} (its plugin failed or was removed)")
    work = plugin.folder / "work" / uuid.uuid4().hex
    results = []
    try:
        for item in items:
            try:
                graded = _grade_item(plugin, work / str(item.index), item)
            except Exception as e:  # noqa: BLE001 - the grader's own failure, returned as data like any result
                graded = failed(f"grading it on a Dask worker failed: {type(e).__name__}: {str(e)[:500]}")
            results.append((item.index, graded))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return results


def _grade_item(plugin: CoursePlugin, folder: Path, item: Item) -> Graded:
    assert plugin.pool is not None and plugin.config is not None
    if Path(item.name).name != item.name or item.name in ("", ".", ".."):
        return failed(f"the batch sent an unusable file name {item.name!r}")
    if item.size < 0:
        return failed(f"the batch could not read {item.error}")
    folder.mkdir(parents=True)
    path = folder / item.name
    with open(path, "wb") as f:
        if item.data is not None:
            f.write(item.data)
        else:
            f.truncate(item.size)
    return plugin.pool.grade_one(path, plugin.config, Shown(item.shown, plugin.course_shown))


# --------------------------------------------------------------------------- the client's side


class Cluster:
    """The batch's grading on the Dask scheduler at ``address``: ``check`` the workers, then
    ``grade_all`` (the local ``Pool``'s interface). Use as a context manager.

    ``allow_unsandboxed``: let workers without bubblewrap grade where their submissions get no network
    (``refusal``; ``grade batch --allow-unsandboxed-workers``)."""

    def __init__(self, address: str, assignment: Assignment, config: GradeConfig, warm: bool = True,
                 chunk_size: int | None = None, wait_seconds: float = WAIT_SECONDS,
                 allow_unsandboxed: bool = False):
        self.address = address
        self.assignment = assignment
        self.config = replace(config, sandbox=config.sandbox or requested_mode())
        self.warm = warm
        self.chunk_size = chunk_size
        self.wait_seconds = wait_seconds
        self.allow_unsandboxed = allow_unsandboxed
        self.ours = environment(self.config.sandbox or "auto")
        self.workers: tuple[WorkerFacts, ...] = ()
        # Dask's notes on its own connections are not the batch's words: a scheduler that goes away is logged
        # (at INFO, with a traceback) before the batch can tell; the batch says it itself, and Dask's warnings stay
        _quiet_dask(logging.WARNING)
        try:
            self.client = Client(address, set_as_default=False)  # Dask's distributed.comm.timeouts.connect
        except (OSError, TimeoutError, ValueError) as e:
            raise ClusterError(f"cannot reach the Dask scheduler at {address} ({e}); is `dask scheduler` running "
                               "there, and can this machine reach its port?") from None
        self.name = f"{PLUGIN_PREFIX}{self.client.id}"
        self._registered = False
        self._gone = False  # the scheduler went away: nothing more to ask it
        self._shown: list[str] = []  # what each task's report calls its submission, by index

    @contextlib.contextmanager
    def _talking(self) -> Iterator[None]:
        """Dask's ways of saying that the scheduler went away (a connection lost or closed, the client's
        futures cancelled with it), as the batch's ``ClusterError`` (exit 2, ``SCHEDULER_GONE``)."""
        try:
            yield
        except ClusterError:
            raise
        except (CancelledError, OSError, RuntimeError) as e:
            lost = (isinstance(e, CommClosedError) or self.client.status != "running"
                    or "scheduler-connection-lost" in str(e))
            if not lost and isinstance(e, CancelledError):
                raise ClusterError(f"the Dask scheduler at {self.address} cancelled the batch's work (was it "
                                   "restarted?); what was graded is kept: run the same command again for the "
                                   "rest") from None
            if not lost:
                raise
            self._gone = True
            raise ClusterError(SCHEDULER_GONE.format(address=self.address)) from None

    def __enter__(self) -> "Cluster":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def check(self) -> tuple[WorkerFacts, ...]:
        """Wait for a first worker, then check every connected worker's environment against this
        machine's; a mismatch refuses the batch (``ClusterError``, one line per worker). A worker
        without bubblewrap is never given work unless allowed (``refusal``: its ``refused`` says why);
        when no worker is left, the batch is refused too."""
        with self._talking():
            return self._check()

    def _check(self) -> tuple[WorkerFacts, ...]:
        try:
            self.client.wait_for_workers(1, timeout=self.wait_seconds)
        except TimeoutError:
            if self.client.status != "running":
                raise
            raise ClusterError(f"no Dask worker joined the scheduler at {self.address} within "
                               f"{self.wait_seconds:g} s; start one with `dask worker {self.address}`") from None
        found = self.client.run(environment, self.config.sandbox or "auto", on_error="return")
        info = self.client.scheduler_info(n_workers=-1)["workers"]
        problems, workers = [], []
        for address, env in sorted(found.items()):
            if isinstance(env, BaseException):
                why = (f"the grader is not installed there ({env})" if isinstance(env, ImportError)
                       else f"its check failed ({type(env).__name__}: {env})")
                problems.append(f"{address}: {why}")
                continue
            differs = mismatches(self.ours, env)
            if differs:
                problems.append(f"{address}: {', '.join(differs)}")
            workers.append(WorkerFacts(address, int(info.get(address, {}).get("nthreads", 1)), env["sandbox"],
                                       refusal(env, self.allow_unsandboxed)))
        if problems:
            ours = self.ours
            raise ClusterError("these Dask workers cannot grade like this machine, so the batch is refused:\n"
                               + "".join(f"  {p}\n" for p in problems)
                               + f"Each worker needs Python {ours['python']}, torch=={ours['torch']} and this same "
                               f"grader, {ours['grader']} (install it from the same checkout or release, then "
                               "restart the worker): see docs/dask.md")
        if workers and all(w.refused for w in workers):
            raise ClusterError(f"no Dask worker at {self.address} may grade, so the batch is refused:\n"
                               + "".join(f"  {w.address}: {w.refused}\n" for w in workers)
                               + "A submission that runs without a sandbox could reach the scheduler and, "
                               "through it, every worker: see docs/dask.md")
        self.workers = tuple(workers)
        return self.workers

    def _register(self) -> None:
        """Remove plugins left by batches whose client is gone, then ship the course once to every worker."""
        stale = self.client.run_on_scheduler(_stale_plugins)
        for name in stale:
            self.client.unregister_worker_plugin(name)
        with tempfile.TemporaryDirectory(prefix="grader-bundle-") as tmp:
            write_bundle(self.assignment, Path(tmp), self.config)
            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode="w:gz") as tar:
                tar.add(tmp, arcname=".")
        plugin = CoursePlugin(self.name, buf.getvalue(), self.config, self.warm, self.ours,
                              str(self.config.root) if self.config.root else "", self.allow_unsandboxed)
        self.client.register_plugin(plugin, name=self.name)
        self._registered = True

    @property
    def slots(self) -> int:
        """The grading processes of the workers that grade (checked at the start)."""
        return sum(w.threads for w in self.workers if not w.refused)

    def grade_all(self, tasks: Sequence[Task], config: GradeConfig) -> Iterator[tuple[Any, Graded]]:
        """Grade each task on the cluster; yield (key, Graded) as chunks finish (``workers.GradingEngine``; see
        the module docstring). The scheduler going away is a ``ClusterError`` (``SCHEDULER_GONE``)."""
        if not self.workers:
            self.check()
        with self._talking():
            if not self._registered:
                self._register()
            yield from self._grade_all(tasks)

    def _grade_all(self, tasks: Sequence[Task]) -> Iterator[tuple[Any, Graded]]:
        keys = [t.key for t in tasks]
        self._shown = [t.shown for t in tasks]
        chunks = Chunks(make_chunks([(i, t.path) for i, t in enumerate(tasks)], self.slots, self.chunk_size),
                        self.slots)
        # No chunk finishing for this long means something below us is stuck (a lost message): stop, not hang.
        stall = max(STALL_SECONDS, 3 * chunks.largest * (self.config.timeout + 60))
        idle_since = last_done = time.monotonic()
        while chunks:
            for chunk in chunks.to_send():
                chunks.sent(self._submit(chunk), chunk)
            try:
                with self.client.as_current():
                    done, _ = wait(list(chunks.running), timeout=POLL_SECONDS, return_when="FIRST_COMPLETED")
            except TimeoutError:
                done = set()
            if not done:
                able = self._able()
                if able:
                    idle_since = time.monotonic()
                    self._unstick(chunks)
                elif time.monotonic() - idle_since > self.wait_seconds:
                    raise ClusterError(f"no Dask worker able to grade has been connected to {self.address} for "
                                       f"{self.wait_seconds:g} s; what was graded is kept: start workers and run "
                                       "the same command again for the rest")
                if time.monotonic() - last_done > stall:
                    raise ClusterError(f"no chunk of the batch finished on the cluster at {self.address} for "
                                       f"{stall:g} s; what was graded is kept: look at the workers' logs, then "
                                       "run the same command again for the rest")
                continue
            idle_since = last_done = time.monotonic()
            for future in done:
                chunk = chunks.returned(future)
                for index, graded in self._outcome(future, chunk, chunks):
                    yield keys[index], graded
                future.release()

    def _submit(self, chunk: list[tuple[int, Path]]) -> Future:
        items = [_item(index, path, self._shown[index]) for index, path in chunk]
        return self.client.submit(grade_chunk, self.name, items, resources={self.name: 1}, pure=False,
                                  key=f"grade-chunk-{uuid.uuid4().hex}")

    def _outcome(self, future: Future, chunk: Chunk, chunks: Chunks) -> list[tuple[int, Graded]]:
        """A finished task's results; a chunk lost is sent again, one lost with its workers split (or,
        alone, recorded: ``Chunks.killed``)."""
        if future.status == "cancelled":
            raise ClusterError(f"the Dask scheduler at {self.address} cancelled the batch's work (was it "
                               "restarted?); what was graded is kept: run the same command again for the rest")
        if future.status == "finished":
            try:  # held by the worker that made it: lost with it, made again elsewhere (or stuck: see _unstick)
                return _checked(future.result(timeout=FETCH_SECONDS), chunk)
            except TimeoutError:
                chunks.again(chunk)
                future.cancel()
                return []
        if future.status != "error":  # lost on its way back (a worker gone): graded again, as a new task
            chunks.again(chunk)
            future.cancel()
            return []
        error = future.exception()
        if isinstance(error, KilledWorker):
            if chunks.killed(chunk):
                return []
            index, path = chunk[0]
            report = machine_lost_report(str(path), self.assignment, str(self.config.root or ""),
                                         error.allowed_failures + 1)
            return [(index, as_graded(prepare(report)))]
        return [(index, failed(f"its task failed on a Dask worker: {type(error).__name__}: {error}"))
                for index, _ in chunk]

    def _able(self) -> bool:
        """Whether some connected worker offers the batch's resource (its plugin checked it and started its pool)."""
        info = self.client.scheduler_info(n_workers=-1)["workers"]
        return any(w.get("resources", {}).get(self.name, 0) > 0 for w in info.values())

    def _unstick(self, chunks: Chunks) -> None:
        """Submit again the chunks the scheduler holds as runnable nowhere. When every worker able to grade
        was lost at once, its tasks wait for a worker with the batch's resource; a worker offers it only
        after it registered (its plugin's setup), and Dask looks at waiting tasks again only when a worker
        registers, so they would wait for ever. New tasks are placed afresh."""
        stuck = set(self.client.run_on_scheduler(_unrunnable, [f.key for f in chunks.running]))
        futures = [f for f in chunks.running if f.key in stuck]
        chunks.stuck(futures)
        for future in futures:
            future.cancel()

    def close(self) -> None:
        """Remove the batch's plugin from the workers (they stop its grading processes), then disconnect.
        With the scheduler gone there is no one to ask: Dask's own complaints about it are not shown."""
        gone = self._gone or self.client.status != "running"
        try:
            if self._registered and not gone:
                self.client.unregister_worker_plugin(self.name)
        except Exception as e:  # noqa: BLE001 - the scheduler may be gone; its workers end the plugin with it
            logger.warning("could not remove %s from the workers: %s", self.name, e)
        finally:
            if gone:
                _quiet_dask()  # the batch says why, once
            self.client.close()


def _quiet_dask(level: int = logging.CRITICAL + 1) -> None:
    """Raise Dask's loggers (each may have a level of its own) to ``level``: by default silent, for its
    complaints while its client gives up a scheduler that went away are tracebacks, and the batch has said
    what happened."""
    names = [n for n in logging.root.manager.loggerDict if n == "distributed" or n.startswith("distributed.")]
    for name in ["distributed", *names]:
        logger_ = logging.getLogger(name)
        logger_.setLevel(max(logger_.getEffectiveLevel(), level))




def _unrunnable(keys: list[str], dask_scheduler: Any) -> list[str]:
    """On the scheduler: which of ``keys`` wait for a worker that can run them (state ``no-worker``)."""
    tasks = dask_scheduler.tasks
    return [k for k in keys if k in tasks and tasks[k].state == "no-worker"]


def _stale_plugins(dask_scheduler: Any) -> list[str]:
    """On the scheduler: this grader's plugins whose batch (client) is no longer connected."""
    clients = {str(c) for c in dask_scheduler.clients}
    return [name for name in dask_scheduler.worker_plugins
            if name.startswith(PLUGIN_PREFIX) and name[len(PLUGIN_PREFIX):] not in clients]


def _item(index: int, path: Path, shown: str) -> Item:
    """A submission as sent: its bytes (read now, so the client holds only the chunks in flight)."""
    try:
        size = path.stat().st_size
        data = path.read_bytes() if size <= size_cap(path) else None
    except OSError as e:  # gone or unreadable since it was collected: the grader's failure, as it is locally
        return Item(index, path.name, None, -1, shown, f"{path} ({e.strerror or e})")
    return Item(index, path.name, data, size, shown)


def _checked(results: Any, chunk: Chunk) -> list[tuple[int, Graded]]:
    """A chunk's results as sent back: one ``Graded`` per submission sent; any other is the grader's failure."""
    sent = {index for index, _ in chunk}
    got: dict[int, Graded] = {}
    if isinstance(results, list):
        for pair in results:
            if isinstance(pair, tuple) and len(pair) == 2 and pair[0] in sent and isinstance(pair[1], Graded):
                got.setdefault(pair[0], pair[1])
    return [(index, got.get(index) or failed("its Dask worker sent back no result for it")) for index, _ in chunk]
