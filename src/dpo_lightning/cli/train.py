"""`dpo-train` (and the repository's `python train.py`): train a policy with DPO or another preference loss.

dpo-train                                        # embedded SmolLM2-135M-Instruct on the built-in set
dpo-train model=mistral data=shp loss.beta=0.1
dpo-train -m loss.beta=0.01,0.1,0.5              # a Hydra multirun sweep
"""

import hydra
from omegaconf import DictConfig

from ..tasks.train import optimized_value, train
from . import CONF


@hydra.main(version_base="1.3", config_path=CONF, config_name="train")
def main(cfg: DictConfig) -> float | None:
    return optimized_value(cfg, train(cfg))


if __name__ == "__main__":
    main()
