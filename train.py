"""Train a policy with DPO (or another preference loss). Examples:

python train.py                                   # embedded SmolLM2-135M-Instruct on the built-in set
python train.py model=mistral data=shp loss.beta=0.1
python train.py -m loss.beta=0.01,0.1,0.5         # a Hydra multirun sweep
"""

import hydra
from omegaconf import DictConfig

from dpo_lightning.training import optimized_value, train


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    return optimized_value(cfg, train(cfg))


if __name__ == "__main__":
    main()
