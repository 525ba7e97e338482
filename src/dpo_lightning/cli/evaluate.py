"""`dpo-evaluate` (and `python evaluate.py`): a trained run's policy against its base model, on held-out pairs.

dpo-evaluate run_dir=outputs/2026-11-27/10-00-00          # report in <run_dir>/eval/report.html
"""

import hydra
from omegaconf import DictConfig

from ..tasks.evaluate import evaluate
from . import CONF


@hydra.main(version_base="1.3", config_path=CONF, config_name="eval")
def main(cfg: DictConfig) -> float:
    return evaluate(cfg).dpo["preference_accuracy"]


if __name__ == "__main__":
    main()
