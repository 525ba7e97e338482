"""`dpo-train-online` (and `python train_online.py`): online (iterative) DPO in rounds.

dpo-train-online                                  # embedded SmolLM2-135M-Instruct, built-in prompts, 3 rounds
dpo-train-online hydra.run.dir=<the run> resume=true   # continue a stopped run
"""

import hydra
from omegaconf import DictConfig

from ..tasks.online import train_online
from . import CONF


@hydra.main(version_base="1.3", config_path=CONF, config_name="online")
def main(cfg: DictConfig) -> float | None:
    return train_online(cfg).get("win_rate")


if __name__ == "__main__":
    main()
