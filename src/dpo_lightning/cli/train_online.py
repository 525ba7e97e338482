"""`dpo-train-online` (and `python train_online.py`): online (iterative) DPO in rounds."""

import hydra
from omegaconf import DictConfig

from ..tasks.online import train_online
from . import CONF, command, one_line_errors

EXAMPLES = """
python train_online.py (or dpo-train-online): online DPO in rounds: sample K answers per prompt from the policy,
judge them, train DPO on best-vs-worst pairs, evaluate; each round resumable.

  python train_online.py                                    the embedded SmolLM2, built-in prompts, 3 rounds
  python train_online.py experiment=arithmetic_online       word problems judged by exact match
  python train_online.py peft=lora online.rounds=2 online.sampling.samples_per_prompt=8
  python train_online.py judge=reward judge.model=<reward model folder or hub id>
  python train_online.py hydra.run.dir=<the run> resume=true   continue a stopped run
"""


@command("online", EXAMPLES)
@hydra.main(version_base="1.3", config_path=CONF, config_name="online")
@one_line_errors
def main(cfg: DictConfig) -> float | None:
    return train_online(cfg).get("win_rate")


if __name__ == "__main__":
    main()
