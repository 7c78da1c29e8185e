"""``python -m grader`` is the ``grade`` command."""
import sys

if __name__ == "__main__":
    try:
        from grader.cli import main
    except KeyboardInterrupt:  # Ctrl-C while the command itself loads: no traceback
        print("grade: interrupted", file=sys.stderr)
        sys.exit(130)
    main()
