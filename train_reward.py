"""Train a Bradley–Terry reward model on any preference data option. Examples:

python train_reward.py                              # embedded SmolLM2-135M-Instruct on the built-in set
python train_reward.py data=hh model=qwen2_5_0_5b peft=lora
python evaluate.py run_dir=<a DPO run> judge=<this run>/final   # the reward model as the judge

The same command installed: `dpo-train-reward ...` (dpo_lightning.cli.train_reward).
"""

from dpo_lightning.cli.train_reward import main

if __name__ == "__main__":
    main()
