"""Online (iterative) DPO: sample answers from the policy, judge them, train DPO on the best-vs-worst pairs,
evaluate, in rounds (see dpo_lightning.tasks.online.loop). Examples:

python train_online.py                                    # embedded SmolLM2-135M-Instruct, built-in prompts, 3 rounds
python train_online.py peft=lora online.rounds=2 judge=reward judge.model=<reward model>
python train_online.py hydra.run.dir=<the run> resume=true   # continue a stopped run

The same command installed: `dpo-train-online ...` (dpo_lightning.cli.train_online).
"""

from dpo_lightning.cli.train_online import main

if __name__ == "__main__":
    main()
