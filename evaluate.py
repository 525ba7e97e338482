"""Compare a DPO-trained model with its base model on held-out preference pairs. Example:

python evaluate.py run_dir=outputs/2026-11-27/10-00-00          # report in <run_dir>/eval/report.html

The same command installed: `dpo-evaluate ...` (dpo_lightning.cli.evaluate).
"""

from dpo_lightning.cli.evaluate import main

if __name__ == "__main__":
    main()
