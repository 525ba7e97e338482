"""`dpo-train-reward` (and `python train_reward.py`): a Bradley–Terry reward model on any data option.

dpo-train-reward data=hh model=qwen2_5_0_5b peft=lora
"""

import hydra
from omegaconf import DictConfig

from ..tasks.train import optimized_value, train
from . import CONF


@hydra.main(version_base="1.3", config_path=CONF, config_name="reward")
def main(cfg: DictConfig) -> float | None:
    return optimized_value(cfg, train(cfg))


if __name__ == "__main__":
    main()
