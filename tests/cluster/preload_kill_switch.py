"""A Dask worker preload for the tests (``dask worker --preload``): the worker process kills itself with
SIGKILL when it is about to grade a file holding MARKER. It stands in for a submission that takes its
grading machine down, which the sandbox keeps a real submission from doing."""
import os
import signal

from grader.batch import cluster

MARKER = b"# test: this submission takes its Dask worker down"
_grade_item = getattr(cluster, "_unpatched_grade_item", cluster._grade_item)  # a worker may load a preload twice
cluster._unpatched_grade_item = _grade_item


def _killing(plugin, folder, item):
    if item.data is not None and MARKER in item.data:
        os.kill(os.getpid(), signal.SIGKILL)
    return _grade_item(plugin, folder, item)


cluster._grade_item = _killing
