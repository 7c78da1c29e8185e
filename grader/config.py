"""One frozen configuration for a grading run; the CLI builds it, the library reads it."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Limits:
    """Resource limits of one submission's worker and everything it starts."""

    #: the memory of all the submission's processes together (resident), and each one's address space
    memory_mb: int = 4096
    cpu_seconds: int = 600
    file_mb: int = 64
    #: everything the submission may write (under bubblewrap: one sized tmpfs for its folder and /tmp)
    disk_mb: int = 256
    processes: int = 64
    open_files: int = 1024
    #: how much of stdout and stderr is kept (the rest is counted and dropped)
    output_kb: int = 64
    #: largest tensor payload a worker may return for one case
    tensor_mb: int = 64


def default_cache_dir() -> Path:
    """Where reference outputs are cached: ``$GRADER_CACHE``, else the XDG cache folder."""
    env = os.environ.get("GRADER_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "grader"


@dataclass(frozen=True)
class GradeConfig:
    """Options of one grading run.

    ``assignment``: force the assignment instead of reading the notebook metadata or
    inferring it from the classes defined. ``root``: the course folder (None: found as
    ``grader.course.resolve`` documents). ``timeout``: wall-clock seconds allowed for all
    of a submission's code; ``case_timeout``: for its top-level code or any one case.
    ``use_cache``: reuse the reference's cached outputs. ``sandbox``: 'auto' (bubblewrap
    when it works here, else a plain subprocess), 'bwrap' or 'none'; None reads
    ``$GRADER_SANDBOX``. ``limits``: the resource limits of the submission's code.
    """

    assignment: str | None = None
    root: Path | None = None
    cache_dir: Path = field(default_factory=default_cache_dir)
    timeout: float = 120.0
    case_timeout: float = 30.0
    use_cache: bool = True
    sandbox: str | None = None
    limits: Limits = field(default_factory=Limits)
