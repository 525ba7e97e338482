"""Train a policy with DPO (or another preference loss). Examples:

python train.py                                   # embedded SmolLM2-135M-Instruct on the built-in set
python train.py model=mistral data=shp loss.beta=0.1
python train.py -m loss.beta=0.01,0.1,0.5         # a Hydra multirun sweep

The same command installed: `dpo-train ...` (dpo_lightning.cli.train).
"""

from dpo_lightning.cli.train import main

if __name__ == "__main__":
    main()
