"""A Dask worker preload for the tests (``dask worker --preload``): the worker process kills itself with
SIGKILL when it is about to grade a file holding MARKER. It stands in for a submission that takes its
grading machine down, which the sandbox keeps a real submission from doing. Every file the worker
starts to grade is also logged (one name per line) to ``$GRADER_TEST_GRADED_LOG``, so a test can see
that nothing was graded twice."""
import os
import signal

from grader.batch import cluster

MARKER = b"# test: this submission takes its Dask worker down"
_grade_item = getattr(cluster, "_unpatched_grade_item", cluster._grade_item)  # a worker may load a preload twice
cluster._unpatched_grade_item = _grade_item


def _killing(plugin, folder, item):
    log = os.environ.get("GRADER_TEST_GRADED_LOG")
    if log:
        with open(log, "a", encoding="utf-8") as f:
            f.write(item.name + "\n")
    if item.data is not None and MARKER in item.data:
        os.kill(os.getpid(), signal.SIGKILL)
    return _grade_item(plugin, folder, item)


cluster._grade_item = _killing
