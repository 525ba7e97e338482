"""`dpo-train-reward` (and `python train_reward.py`): a Bradley–Terry reward model on any data option."""

import hydra
from omegaconf import DictConfig

from ..tasks.train import optimized_value, train
from . import CONF, command, one_line_errors

EXAMPLES = """
python train_reward.py (or dpo-train-reward): a Bradley-Terry reward model of any model= on any data= option;
its final/ serves as evaluate.py judge=reward judge.model=<run>/final.

  python train_reward.py                                    the embedded SmolLM2 on the built-in pairs
  python train_reward.py data=hh model=qwen2_5_0_5b peft=lora
  python train_reward.py data=jsonl data.path=mine.jsonl trainer.max_epochs=2
  python train_reward.py -m optimizer.lr=1e-5,3e-5          a sweep
  python train_reward.py hydra.run.dir=<its directory> resume=true   continue a stopped run
"""


@command("reward", EXAMPLES)
@hydra.main(version_base="1.3", config_path=CONF, config_name="reward")
@one_line_errors
def main(cfg: DictConfig) -> float | None:
    return optimized_value(cfg, train(cfg))


if __name__ == "__main__":
    main()
