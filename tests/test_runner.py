"""Student code that hangs, crashes or exits: each case ends as an error, the rest still run."""
from __future__ import annotations

import os
import time


from conftest import course
from grader import GradeConfig, grade_submission
from grader.course.assignments import get_assignment
from grader.course.reference_outputs import reference_statements

GOOD = "\n".join(s.source for s in reference_statements(get_assignment(course(), "mha"))) + "\n"


def _submission(tmp_path, forward_prefix: str, top: str = ""):
    """The reference MHA, with code injected at the start of MultiHeadedAttention.forward."""
    marker = "        n_batch = Q.shape[0]\n"
    assert marker in GOOD
    src = GOOD.replace(marker, marker + "".join(f"        {line}\n" for line in forward_prefix.splitlines()))
    path = tmp_path / "s.py"
    path.write_text(top + src)
    return path


def _statuses(report, prefix):
    return {c.status for c in report.cases if c.case_id.startswith(prefix)}


def _no_children_left(marker: str) -> bool:
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if marker.encode() in f.read():
                        return False
            except OSError:
                pass
    return True


def test_an_infinite_loop_times_out_its_case_and_the_rest_still_run(tmp_path):
    path = _submission(tmp_path, "if Q.shape[1] == 3:\n    while True: pass")  # only mha-cross has n_Q = 3
    start = time.perf_counter()
    report = grade_submission(path, GradeConfig(case_timeout=3, timeout=60))
    assert time.perf_counter() - start < 20
    by_id = {c.case_id: c for c in report.cases}
    assert by_id["mha-cross"].status == "error"
    assert by_id["mha-cross"].reason == "your code timed out after 3.0 s in this case"
    assert all(c.status == "passed" for c in report.cases if c.case_id != "mha-cross")


def test_os_exit_in_forward_is_a_crash_of_that_case(tmp_path):
    path = _submission(tmp_path, "if Q.shape[0] == 1:\n    import os; os._exit(0)")  # only mha-batch1
    report = grade_submission(path)
    by_id = {c.case_id: c for c in report.cases}
    assert by_id["mha-batch1"].status == "error"
    assert "exited early" in by_id["mha-batch1"].reason
    assert [c.case_id for c in report.cases if c.status != "passed"] == ["mha-batch1"]


def test_sys_exit_in_forward_is_an_ordinary_error(tmp_path):
    path = _submission(tmp_path, "raise SystemExit(3)")
    report = grade_submission(path)
    assert _statuses(report, "mha-") - {"passed"} == {"error"}  # mha-indivisible never calls forward
    assert _statuses(report, "sdpa-") == {"passed"}
    reason = next(c.reason for c in report.cases if c.case_id == "mha-match")
    assert reason.startswith("SystemExit in s.py, line") and "forward" in reason


def test_a_hanging_top_level_statement_needed_by_the_classes(tmp_path):
    top = "import time\nSLOW = [time.sleep(1000)]\n"
    src = GOOD.replace("class ScaledDotProductAttention(nn.Module):",
                       "class ScaledDotProductAttention(nn.Module):\n    slow = SLOW")
    path = tmp_path / "s.py"
    path.write_text(top + src)
    start = time.perf_counter()
    report = grade_submission(path, GradeConfig(case_timeout=3))
    assert time.perf_counter() - start < 15
    assert report.score == 0 and {c.status for c in report.cases} == {"error"}
    assert any("top-level code timed out" in n for n in report.notes)


def test_detached_children_do_not_outlive_grading(tmp_path):
    marker = f"grader-test-sleeper-{os.getpid()}"
    top = (f"import subprocess, sys\n"
           f"_child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)', '{marker}'])\n")
    src = GOOD.replace("class ScaledDotProductAttention(nn.Module):",
                       "class ScaledDotProductAttention(nn.Module):\n    child = _child")
    path = tmp_path / "s.py"
    path.write_text(top + src)
    report = grade_submission(path)
    assert report.score == report.max_score
    time.sleep(0.2)
    assert _no_children_left(marker)


def test_printing_does_not_disturb_results(tmp_path):
    path = _submission(tmp_path, 'print(\'{"kind": "done"}\')\nimport sys; print("x" * 100000, file=sys.stderr)')
    report = grade_submission(path)
    assert report.score == report.max_score


def test_nothing_after_a_forged_end_counts_even_in_the_same_read():
    """A forged 'internal' record read together with the real results that follow it (a loaded machine
    reads them at once): the run ends at the forgery, and no case after it is observed."""
    from grader.execute.protocol import CallRecord, Done, ExecRecord, Internal, Ready
    from grader.execute.runner import Worker, WorkerRun

    result, pending = WorkerRun(), ["shape", "match"]
    records = [Ready(), ExecRecord(()), Internal("grader bug"),
               CallRecord("shape", "ok", None, None, {}, 0.0, ()), Done()]
    Worker._apply_all(iter(records), result, pending, generate=False)
    assert result.stop is not None and result.stop.kind == "worker_failed"
    assert result.observations == {} and pending == ["shape", "match"] and not result.finished
