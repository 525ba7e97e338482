"""The console commands (`dpo-train`, `dpo-evaluate`, `dpo-train-online`, `dpo-train-reward`, from
`pip install dpo_lightning`) and the repository's train.py, evaluate.py, ...: each a `@hydra.main` over the
packaged conf/ that calls its task. Process-wide settings of a command run belong here, not in the library."""

import warnings
from pathlib import Path

# The packaged configs: a link to the repository's conf/ in a source checkout, a copy in an installed wheel.
CONF = str(Path(__file__).resolve().parent.parent / "conf")

# The frozen reference is in eval mode on purpose; Lightning warns about any module in eval mode at fit start.
warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode.*")
# Mid-epoch resume is exact here: the datamodule restores the data position itself (data/resumable.py).
warnings.filterwarnings("ignore", message=r".*resuming from a checkpoint that ended before the epoch ended.*")
