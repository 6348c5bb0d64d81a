"""The failures a command reports in one line on stderr instead of a traceback (suite.cli's boundary)."""

from __future__ import annotations

EXIT_OK, EXIT_FAILURES, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
EXIT_CODES_TEXT = "exit codes: 0 done; 1 done, with failures; 2 usage or input error; 130 interrupted"


class UsageError(Exception):
    """Bad arguments, or an input or output the command cannot use: the message names the file and
    says what to do. The command exits 2."""
