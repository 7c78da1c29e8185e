"""Grading a whole class: sources (LMS layouts), the results store (SQLite), the pool, class insights."""
