"""`UsageError`: a mistake in what the user gave (a config value, a data row, a path, an unreachable Hub), not a
bug. Its message is the whole story: it names the key, file, line or field and what to set. The entry points print
it as one line (the traceback behind `HYDRA_FULL_ERROR=1`); library code raises a subclass (`ConfigError`,
`DataError`) or this."""

from __future__ import annotations


class UsageError(ValueError):
    pass
