"""Compare a DPO-trained model with its base model on held-out preference pairs. Example:

python evaluate.py run_dir=outputs/2026-11-27/10-00-00          # report in <run_dir>/eval/report.html
"""

import hydra
from omegaconf import DictConfig

from dpo_lightning.evaluation import evaluate


@hydra.main(version_base="1.3", config_path="conf", config_name="eval")
def main(cfg: DictConfig) -> float:
    return evaluate(cfg).dpo["preference_accuracy"]


if __name__ == "__main__":
    main()
