"""Online (iterative) DPO: sample answers from the policy, judge them, train DPO on the best-vs-worst pairs,
evaluate, in rounds (see dpo_lightning.online). Examples:

python train_online.py                                    # embedded SmolLM2-135M-Instruct, built-in prompts, 3 rounds
python train_online.py peft=lora online.rounds=2 judge=reward judge.model=<reward model>
python train_online.py hydra.run.dir=<the run> resume=true   # continue a stopped run
"""

import hydra
from omegaconf import DictConfig

from dpo_lightning.online import train_online


@hydra.main(version_base="1.3", config_path="conf", config_name="online")
def main(cfg: DictConfig) -> float | None:
    return train_online(cfg).get("win_rate")


if __name__ == "__main__":
    main()
