"""`dpo-evaluate` (and `python evaluate.py`): a trained run's policy against its base model, on held-out pairs."""

import hydra
from omegaconf import DictConfig

from ..tasks.evaluate import evaluate
from . import CONF, command, one_line_errors

EXAMPLES = """
python evaluate.py (or dpo-evaluate): a train.py run's policy against its base model on held-out pairs: preference
accuracy, displacement, KL, collapse and diversity, judged win rates; report in <run_dir>/eval/report.md.

  python evaluate.py run_dir=outputs/2026-11-27/10-00-00
  python evaluate.py run_dir=... judge=auto                  a reward model trained on pairs the run never saw
  python evaluate.py run_dir=... base_model=pretrained generation.num_prompts=50
  python evaluate.py run_dir=... data=hh data.path=/data/hh/test.jsonl.gz judge=reward judge.model=<folder>
  python evaluate.py run_dir=... judge=llm judge.model=Qwen/Qwen2.5-7B-Instruct device=cuda
"""


@command("eval", EXAMPLES)
@hydra.main(version_base="1.3", config_path=CONF, config_name="eval")
@one_line_errors
def main(cfg: DictConfig) -> float:
    return evaluate(cfg).dpo["preference_accuracy"]


if __name__ == "__main__":
    main()
