"""The report formats ``grade --format`` offers (``grader.report.render`` makes each), in one place
that imports nothing, so the command line can list them without loading the renderers."""

FORMATS = ("rich", "json", "gradescope", "junit", "csv", "html")
