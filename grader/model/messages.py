"""Every sentence a student or an instructor reads about a submission, in one place.

Stages return facts (``grader.model.outcomes``, ``ErrorInfo``); these functions word
them. Nothing else in the grader builds student-facing text from outcomes, and nothing
parses the text built here.
"""
from __future__ import annotations

import signal
from typing import Any, Iterable

from grader.model.outcomes import Cause, Note, Problem, Stop

#: How each known cause of a scale error in the attention scores is explained.
SCALE_CAUSES = {
    "sqrt_d_feat": "that is what dividing by √d_feat instead of √d_head gives (divide the scores by √d_head, "
                   "the size of one head)",
    "unscaled_d_head": "the scores are not scaled at all (divide by √d_head)",
    "unscaled_d_k": "the scores are not scaled at all (divide by √d_K)",
}
#: Causes that say a graded class cannot run at all (and why).
MISSING_KINDS = ("missing_target", "not_implemented", "syntax_error", "too_deep")
_PHASES = {"build": "while building {target}", "load_params": "while loading the reference's parameters",
           "backward": "during backward"}


#: Significant digits of the numbers a report prints about a submission's outputs: a value a student
#: reads (an expected or computed value, an excerpt, a factor, a sum) and a difference between two
#: values. No more: the digits after these change from one CPU to the next (vector kernels, summation
#: order), and a student needs the size of a number, not its noise. The JSON keeps the full floats.
VALUE_DIGITS = 4
DIFFERENCE_DIGITS = 3


def points(x: float) -> str:
    """A number of points as the reports print it (``2``, ``1.5``)."""
    return f"{x:g}"


def value(x: float) -> str:
    """A value a student reads (expected, got, an excerpt, a factor, a sum): ``0.5865``, ``2``, ``-1e+09``."""
    return f"{x:.{VALUE_DIGITS}g}"


def difference(x: float) -> str:
    """How far apart two values are (a max abs or rel diff): ``0.163``."""
    return f"{x:.{DIFFERENCE_DIGITS}g}"


def time_words(seconds: float) -> str:
    """'61 s' style."""
    return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"


# --------------------------------------------------------------------------- stops


def stop_phrase(stop: Stop) -> str:
    """What the code did, to follow 'your code ...': 'timed out after 3.0 s'."""
    d = stop.data
    if stop.kind == "case_timeout":
        return f"timed out after {time_words(d['seconds'])}"
    if stop.kind == "submission_timeout":
        return f"ran out of time (the limit for the whole submission is {time_words(d['seconds'])})"
    if stop.kind == "crashed":
        name = d.get("signal", "")
        extra = {"SIGKILL": " (out of memory?)", "SIGXCPU": " (CPU time limit)",
                 "SIGXFSZ": " (file size limit)", "SIGSEGV": " (e.g. runaway recursion)"}.get(name, "")
        return f"crashed ({name}){extra}"
    if stop.kind == "exited":
        return f"exited early with code {d.get('code')} (sys.exit or os._exit in the submission?)"
    if stop.kind == "memory":
        return (f"used more than {d['limit_mb']} MB of memory in total (all its processes together) "
                "and was stopped")
    if stop.kind == "disk":
        return f"wrote more than {d['limit_mb']} MB of files and was stopped"
    if stop.kind == "protocol":
        return f"interfered with the grader's result channel ({d.get('rule', 'a malformed record')})"
    if stop.kind == "worker_failed":
        return ("broke the grader's worker process (did it close files it did not open, or change Python's "
                "or torch's own functions, such as json or os?)")
    return "stopped responding"


def signal_name(number: int) -> str:
    """'SIGSEGV' for 11."""
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


# --------------------------------------------------------------------------- phrases said in several places


def location(label: str, line: Any, function: str | None = None, code: str | None = None) -> str:
    """Where something is in the submission: 'cell 7, line 21 (forward): `y = x @ w`' (the function
    and the code only where known; a module's top level is not named)."""
    where = f"{label}, line {line}"
    if function and function != "<module>":
        where += f" ({function})"
    return where + (f": `{code}`" if code else "")


def error_lead(err: dict[str, Any], phase: str | None, target: str, where: str = "") -> str:
    """'RuntimeError in cell 7, line 21 while building MHA': the exception's type, where, and during what."""
    during = _PHASES.get(phase or "", "").format(target=target)
    return f"{err.get('type', 'Error')}{where}{' ' + during if during else ''}"


def _did_you_mean(target: str, suggestion: dict[str, Any]) -> str:
    s = suggestion
    return f"{target} is not defined; did you mean `{s['name']}` ({location(s['label'], s['line'])})?"


def rename_to(target: str) -> str:
    return f"Rename the class to {target}, the name the assignment grades."


def function_names(names: Iterable[str]) -> str:
    """'`split_heads`, `forward`': the functions a blank is in."""
    return ", ".join(f"`{n}`" for n in names)


def mistake_lead(names: list[str]) -> str:
    return f"Known mistake: {names[0]}" if len(names) == 1 else "Known mistake, one of: " + "; ".join(names)


# --------------------------------------------------------------------------- errors


def student_error(err: dict[str, Any], phase: str | None, target: str) -> str:
    """'RuntimeError in cell 7, line 21 (forward): `y = x @ w` — <message>' for a captured exception.

    ``err`` is an ``ErrorInfo`` as a dict (how causes keep it: plain data).
    """
    where = (" in " + location(err["label"], err.get("line"), err.get("function"), err.get("code"))
             if err.get("label") else "")
    message = " ".join(str(err.get("message", "")).split())
    if err.get("api_misuse"):
        return message if not where else f"{message} ({where.strip()})"
    lead = error_lead(err, phase, target, where)
    return f"{lead} — {message}" if message else lead


# --------------------------------------------------------------------------- problems


def problem_text(p: Problem, case: Any = None) -> str:
    """One problem in plain words (a first line, then any excerpt lines)."""
    d = p.data
    name = d.get("name", "")
    label = f"gradient of {name}" if d.get("grad") else f"`{name}`"
    k = p.kind
    if k == "missing_output":
        purpose = d.get("purpose")
        if purpose == "compare":
            return f"`{name}` is missing, so it cannot be compared"
        if purpose == "mask":
            return f"`{name}` is missing, so the mask cannot be checked"
        if purpose == "masking":
            return f"`{name}` is missing, so masking cannot be checked"
        return f"`{name}` is missing from {'the returned dict' if d.get('in_dict') else 'the outputs'}"
    if k == "shape_differs":
        got, exp = d["got"], d["expected"]
        msg = f"{label} has shape {got}, expected {exp}"
        if len(got) != len(exp):
            return msg + f" ({len(got)} dims instead of {len(exp)})"
        dims = [i for i, (a, b) in enumerate(zip(exp, got)) if a != b]
        return msg + f" (dim{'s' if len(dims) > 1 else ''} {', '.join(map(str, dims))} differ{'' if len(dims) > 1 else 's'})"
    if k == "value_differs":
        msg = (f"{label} differs from the reference: max abs diff {difference(d['max_abs'])}, max rel diff "
               f"{difference(d['max_rel'])}, at{index_text(d['index'])} (expected {value(d['expected'])}, "
               f"got {value(d['got'])}; {d['n_bad']} of {d['n_total']} values off)")
        if "first_step" in d:
            first = d["first_step"]
            msg += f"; the first time step that differs is t={first}" + (" (the very first step)" if first == 0 else "")
        if d.get("non_finite"):
            msg += "; it contains NaN or inf"
        if "row" in d:
            row, more = d["row"], d["row_len"] > len(d["expected_row"])
            msg += (f"\n      expected{index_text(row)}: {_excerpt(d['expected_row'], more)}"
                    f"\n      got     {index_text(row)}: {_excerpt(d['got_row'], more)}")
        return msg
    if k == "scale":
        text = f"{label} is {value(d['factor'])}× the expected values"
        return f"{text} — {SCALE_CAUSES[d['known']]}" if d.get("known") in SCALE_CAUSES else text
    if k == "equals_other":
        return f"`{name}` equals the reference's `{d['other']}`: is a step missing after it?"
    if k == "downstream":
        return (f"{', '.join(f'`{n}`' for n in d['names'])} differ too, which may follow from the first "
                "difference above")
    if k == "non_finite":
        return (f"`{name}`{index_text(d['index'])} is NaN or inf; every value must be a finite number "
                "(is something divided by zero, or a mask filled with -inf in a row that is all masked?)")
    if k == "masked_leak":
        return (f"masked positions get attention: `{name}`{index_text(d['index'])} = {value(d['value'])} where mask == 0 "
                "(expected ≈ 0; fill the masked scores with -1e9 before the softmax)")
    if k == "row_sum":
        return (f"rows of `{name}` must sum to 1 over the keys (last dim); row{index_text(d['index'])} sums to "
                f"{value(d['total'])} (is the softmax over dim=-1?)")
    if k == "perturbed_changed":
        return (f"`{name}` changed at row{index_text(d['index'])} when only a masked key/value was changed "
                "(masked positions must not influence the output)")
    if k == "no_gradient":
        return f"parameter `{d['param']}` received no gradient (is it used in forward?)"
    if k == "param_missing":
        return f"parameter `{d['param']}` {d['expected']} is missing"
    if k == "param_shape":
        return f"parameter `{d['param']}` has shape {d['got']}, expected {d['expected']}"
    if k == "param_unexpected":
        return f"unexpected parameter `{d['param']}` {d['got']}"
    if k == "param_count":
        call = f"{case.target}({kwargs(case.init)})" if case is not None else "the module"
        return f"{call} has {d['got']:,} parameters, expected {d['expected']:,}"
    if k == "forbidden_static":
        rule = "" if d["used"] == d["forbidden"] else f" (it forbids {d['forbidden']})"
        return (f"{location(d['label'], d['line'], code=d['code'])} uses {d['used']}, which this exercise "
                f"forbids{rule}; write the computation yourself")
    if k == "forbidden_runtime" and d.get("hidden"):  # seen only while hidden cases ran: no more is told
        return "while a hidden case ran, your code called an API this exercise forbids; write the computation yourself"
    if k == "forbidden_runtime":
        # "torch.lstm (aten::lstm)" already names the family its entry forbids: no "(that is …)" again
        rule = "" if d["called"] in (d["forbidden"],) or d["called"].startswith(d["forbidden"] + " (") \
            else f" (that is {d['forbidden']})"
        return (f"while case {d['case']!r} ran, your code called {d['called']}{rule}, which this exercise "
                "forbids; write the computation yourself")
    if k == "did_not_raise":
        return f"{case.target}({kwargs(case.init)}) did not raise {case.raises}"
    if k == "raised_other":
        return f"raised {d['type']} ({' '.join(d['message'].split())}), expected {case.raises}"
    return str(d.get("text", k))


def kwargs(init: dict[str, Any]) -> str:
    """'d_feat=20, n_head=4'."""
    return ", ".join(f"{k}={v!r}" for k, v in init.items())


def index_text(idx: Iterable[int]) -> str:
    """' [0, 3, 1]': a tensor position as the reports show it (nothing for a scalar's empty index)."""
    idx = list(idx)
    return f" [{', '.join(str(int(i)) for i in idx)}]" if idx else ""


def _excerpt(values: list[float], more: bool) -> str:
    shown = ", ".join(value(v) if v > -1e8 else "masked" for v in values)
    return f"[{shown}{', …' if more else ''}]"


# --------------------------------------------------------------------------- causes


def cause_reason(cause: Cause, case: Any, problems: tuple[Problem, ...] = ()) -> str:
    """The one-line reason of a case that did not pass."""
    d = cause.data
    k = cause.kind
    if k == "not_implemented":
        inside = " in " + function_names(d["needed"]) if d.get("needed") else ""
        return f"not implemented yet ({location(d['label'], d['line'])} is a blank{inside})"
    if k == "syntax_error":
        return f"{d['target']} has a SyntaxError ({location(d['label'], d['line'])})"
    if k == "too_deep":
        return f"{d['target']}'s cell is nested too deeply to read ({location(d['label'], d['line'])})"
    if k == "missing_target":
        s = d.get("suggestion")
        return _did_you_mean(d["target"], s) if s else f"{d['target']} is not defined"
    if k == "exception":
        return student_error(d["error"], d.get("phase"), case.target)
    if k == "stopped":
        stop = Stop(**d["stop"])
        if d.get("scope") == "top-level":
            return f"your top-level code {stop_phrase(stop)}"
        return f"your code {stop_phrase(stop)} in this case"
    if k == "not_run":
        why = ("the time limit for the submission ran out" if d.get("why") == "time"
               else (f"the grading machine's process ended {d.get('stops')} times while grading this submission, "
                     "the last time with nothing else running; your instructor will look at it")
               if d.get("why") == "machine" else f"your code stopped the grader's process {d.get('stops')} times")
        return f"not run: {why}"
    if k == "unverified":
        return (f"cannot confirm that {d['target']} avoids the forbidden APIs: none of its cases ran to "
                "completion")
    if k == "pending":
        return f"graded after submission ({points(case.points)} point{'' if case.points == 1 else 's'})"
    if k == "unavailable":
        return "checked when graded: this case uses the course's own check, which a local check does not run"
    if problems:
        return problem_text(problems[0], case).split("\n")[0]
    return k.replace("_", " ")


def cause_details(cause: Cause, case: Any, problems: tuple[Problem, ...]) -> str:
    """Everything below the reason: the rest of the problems, the traceback; never the reason again."""
    lines: list[str] = []
    if cause.kind == "exception":
        lines.append(cause.data["error"].get("traceback", ""))
    elif cause.kind in MISSING_KINDS:
        lines.append(missing_explanation(cause))
    texts = [problem_text(p, case) for p in problems]
    if texts and cause.kind in ("wrong_answer", "forbidden"):
        first, *rest = texts[0].split("\n")
        lines += rest + texts[1:]
    else:
        lines += texts
    return "\n".join(x for x in lines if x)


def unit_error_text(d: dict[str, Any]) -> str:
    """A cell that cannot be read (``UnitSyntaxError.facts()``): where, the code, what to do."""
    where = location(d["label"], d["line"])
    code = d.get("code", "")
    if d["kind"] == "blank":
        shown = f" (`{code}`)" if code else ""
        inside = f", in {function_names(d['needed'])}, which {d.get('target')} needs" if d.get("needed") else ""
        return f"not implemented yet: {where} is still a blank{shown}{inside}; replace `# FILL IN HERE` with your code"
    if d["kind"] == "too_deep":
        how = f"{d['depth']} levels deep" if d.get("depth") else f"more than {d['limit']} levels deep"
        shown = f" (`{code}`)" if code else ""
        return (f"{where}{shown}: this expression is nested {how}; the grader reads at most {d['limit']}; "
                "split it into smaller statements (compute parts into variables first), so the cell can be graded")
    shown = f": `{code}`" if code else ""
    return f"SyntaxError in {where}{shown} ({d.get('message', '')}); fix this line so the cell runs"


def missing_explanation(cause: Cause) -> str:
    """The full explanation of a graded class that is missing, a blank, or in a cell that cannot be read."""
    d = cause.data
    target = d["target"]
    if cause.kind == "missing_target":
        s = d.get("suggestion")
        if s:
            return f"{_did_you_mean(target, s)} {rename_to(target)}"
        return (f"{target} is not defined in the submission; define `class {target}(nn.Module)` at the top "
                "level of a cell, with exactly this name")
    return f"{target}: {unit_error_text(d)}"


def known_mistake(names_and_hints: list[tuple[str, str]]) -> str:
    """The reason of a case whose outputs match known mistake(s)."""
    lead = mistake_lead([name for name, _ in names_and_hints])
    return f"{lead}. {names_and_hints[0][1]}".strip() if len(names_and_hints) == 1 else lead


# --------------------------------------------------------------------------- notes


def note_text(note: Note) -> str:
    """A remark shown above a report's table."""
    d = note.data
    k = note.kind
    if k == "missing_target":
        return missing_explanation(Cause(d["kind"], d["data"]))
    if k == "unit_error":
        return unit_error_text(d)
    if k == "broken_redefinition":
        return (f"{d['error']['label']} also defines {d['target']} but cannot be read; graded the definition in "
                f"{d['graded']}. {unit_error_text(d['error'])}")
    if k == "skipped_statement":
        return f"{student_error(d['error'], None, '')} (this statement was skipped)"
    if k == "output_tail":
        return "Last output of your code before it stopped: " + d["text"]
    if k == "top_level_stop":
        return f"Your top-level code {stop_phrase(Stop(**d['stop']))}; no case could run."
    if k == "case_stop":
        return f"Your code {stop_phrase(Stop(**d['stop']))} in case {d['case']!r}."
    if k == "local_check":
        return ("Local check: only the public cases ran, against the released fixtures. "
                f"Hidden cases ({points(d['hidden_points'])} points) are graded after you submit.")
    if k == "untrusted_course":
        return (f"No course is configured here (--root, $GRADER_ROOT, or a course around the current folder), "
                f"so the released bundle beside the submission ({d['root']}) was used for a local check only; "
                "this is not a grade.")
    if k == "course_passed_over":
        return (f"Graded against the course in {d['used']} ($GRADER_ROOT); the current folder is inside another "
                f"course, {d['passed_over']}, which was not used (pass --root to choose it).")
    if k == "channel_noise":
        return (f"Your code wrote {d['lines']} line(s) to the grader's result channel; they were ignored.")
    if k == "graded_source":
        saved = d.get("notebook")
        if d["source"] == "file":
            return f"This kernel has not run any of your code yet, so the saved notebook {saved} was graded."
        ran = f"{d['first']} to {d['last']}" if d["first"] != d["last"] else d["first"]
        lead = f"Graded the code this kernel ran (the kernel's input history, {ran}), not a saved file."
        if not saved:
            return lead + " No saved notebook was found to compare it with: submit a notebook that holds this code."
        if d.get("differs"):
            return (f"{lead} The saved notebook differs from the code you ran: save it before you submit "
                    f"({saved} has other code for {', '.join(d['differs'])}).")
        return f"{lead} The saved notebook {saved} holds the same code for the graded classes."
    return str(d.get("text", k))


def partial_credit(score: float, max_score: float) -> str:
    """The per-case line of a recognised mistake that earns a share of the points."""
    return f"partial credit for a recognised mistake: {points(score)} of {points(max_score)}"


def hint_line(hint: str) -> str:
    """A case's hint, as the reports print it."""
    return f"Hint: {hint}"


# --------------------------------------------------------------------------- audiences


def hidden_case_reason(status: str) -> str:
    """What a student's report says of a hidden case beyond its name, points and result."""
    return ("hidden case: passed" if status == "passed"
            else "hidden case: its inputs and the reference's values are not shown; the public cases' causes "
                 "above may explain it")


def hidden_cause_title(n_cases: int) -> str:
    """The entry of a student's report that counts the hidden cases that lost points (whatever their cause)."""
    one = n_cases == 1
    return (f"{n_cases} hidden case{'' if one else 's'} fail{'s' if one else ''} (hidden cases' details are not "
            f"shown; a cause of the public cases may explain {'it' if one else 'them'})")


def hidden_label() -> str:
    """How every view marks a hidden case."""
    return "(hidden)"
