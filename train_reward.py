"""Train a Bradley–Terry reward model on any preference data option. Examples:

python train_reward.py                              # embedded SmolLM2-135M-Instruct on the built-in set
python train_reward.py data=hh model=qwen2_5_0_5b peft=lora
python evaluate.py run_dir=<a DPO run> judge=<this run>/final   # the reward model as the judge
"""

import hydra
from omegaconf import DictConfig

from dpo_lightning.training import optimized_value, train


@hydra.main(version_base="1.3", config_path="conf", config_name="reward")
def main(cfg: DictConfig) -> float | None:
    return optimized_value(cfg, train(cfg))


if __name__ == "__main__":
    main()
