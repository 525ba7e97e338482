"""The console commands (`dpo-train`, `dpo-evaluate`, `dpo-train-online`, `dpo-train-reward`, from
`pip install dpo_lightning`) and the repository's train.py, evaluate.py, ...: each a `@hydra.main` over the
packaged conf/ that calls its task, wrapped by `command`: `--help` prints a short usage, a TRL key stops with
ours, and a `UsageError` (a bad value, row, path) ends the run with its one line (the traceback behind
`HYDRA_FULL_ERROR=1`). Process-wide settings of a command run belong here, not in the library."""

import functools
import logging
import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

from ..config.trl_names import trl_hint
from ..core.errors import UsageError
from ..core.threads import thread_warning
from .usage import own_keys, usage

# The packaged configs: a link to the repository's conf/ in a source checkout, a copy in an installed wheel.
CONF = str(Path(__file__).resolve().parent.parent / "conf")

# The frozen reference is in eval mode on purpose; Lightning warns about any module in eval mode at fit start.
warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode.*")
# Mid-epoch resume is exact here: the datamodule restores the data position itself (data/resumable.py).
warnings.filterwarnings("ignore", message=r".*resuming from a checkpoint that ended before the epoch ended.*")

log = logging.getLogger("dpo_lightning")


def full_errors() -> bool:
    return os.environ.get("HYDRA_FULL_ERROR") == "1"


def command(config_name: str, examples: str) -> Callable[[Callable], Callable]:
    """The console command around a `@hydra.main` function (`task_main`): `-h/--help`, TRL names, usage errors."""

    def wrap(task_main: Callable) -> Callable:
        @functools.wraps(task_main)
        def main(*args, **kwargs):
            argv = sys.argv[1:]
            if "-h" in argv or "--help" in argv:
                print(usage(Path(CONF), config_name, examples))
                return None
            own = own_keys(Path(CONF), config_name)
            for override in argv:
                hint = None if override.split("=")[0] in own else trl_hint(override)
                if hint:
                    print(f"error: {hint}", file=sys.stderr)
                    sys.exit(2)
            return task_main(*args, **kwargs)

        return main

    return wrap


def one_line_errors(task: Callable) -> Callable:
    """Inside the Hydra job: a `UsageError` is logged as one line (console and the run's log) and exits 2."""

    @functools.wraps(task)
    def run(*args, **kwargs):
        warning = thread_warning()  # torch's threads against the cores other processes leave free
        if warning is not None:
            log.warning(warning)
        try:
            return task(*args, **kwargs)
        except UsageError as e:
            if full_errors():
                raise
            log.error("%s   (HYDRA_FULL_ERROR=1 for the traceback)", str(e).strip())
            sys.exit(2)

    return run
