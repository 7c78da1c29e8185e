"""The report formats ``grade --format`` offers (``grader.report.render`` makes each), in one place
that imports nothing, so the command line can list them without loading the renderers."""

FORMATS = ("rich", "json", "gradescope", "junit", "csv", "html", "notebook")
#: Formats drawn from the submission file as well as the report (``render``'s ``source``).
FROM_SOURCE = ("notebook",)
