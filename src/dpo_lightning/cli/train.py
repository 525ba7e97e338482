"""`dpo-train` (and the repository's `python train.py`): train a policy with DPO or another preference loss."""

import hydra
from omegaconf import DictConfig

from ..tasks.train import optimized_value, train
from . import CONF, command, one_line_errors

EXAMPLES = """
python train.py (or dpo-train): train a policy with DPO or another preference loss. Before any weight loads it
prints the plan (stages, loss, lr, precision, device, memory); outputs go under outputs/<date>/<time>/.

  python train.py                                           the embedded SmolLM2 on the built-in pairs: SFT, then DPO
  python train.py experiment=trl data=jsonl data.path=mine.jsonl   your pairs, TRL DPOTrainer's defaults (plain DPO)
  python train.py model=mistral data=shp +plan_only=true plan.gpu=H100-80GB   the plan on that GPU, then stop
  python train.py -m loss.beta=0.01,0.1,0.5                 a sweep: a job per value, summary.md beside them
  python train.py model=llama3_8b peft=lora trainer=ddp trainer.devices=4   LoRA on 4 GPUs (Lightning's DDP)
"""


@command("train", EXAMPLES)
@hydra.main(version_base="1.3", config_path=CONF, config_name="train")
@one_line_errors
def main(cfg: DictConfig) -> float | None:
    return optimized_value(cfg, train(cfg))


if __name__ == "__main__":
    main()
