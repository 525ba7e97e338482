"""TRL's `DPOConfig` fields and the keys that do the same here (docs/trl.md renders this table; a test keeps the
two equal). A command-line override with a TRL name that this project does not use (`learning_rate=1e-6`) stops
at once with the key to write instead, before Hydra suggests `+learning_rate`, a key nothing would read.

Checked against TRL 1.16.0's `DPOConfig` (its defaults are in experiment=trl); `max_prompt_length`,
`reference_free`, `warmup_ratio` and `rpo_alpha` are fields of earlier TRL releases, kept for their users; the
`model_name_or_path`, `dataset_name` and LoRA names are TRL's script arguments (`ModelConfig`).
"""

from __future__ import annotations

# TRL field -> (what to write here, a note). `{v}` is the value the user gave.
TRL_KEYS: dict[str, tuple[str, str]] = {
    "learning_rate": ("optimizer.lr={v}", "the model's recipe sets it per stage (model.recipe.lr, lora_lr, sft_lr)"),
    "beta": ("loss.beta={v}", "every loss option has its own beta"),
    "loss_type": ("loss={v}", "one option per loss: sigmoid is loss=dpo, ipo loss=ipo, hinge loss=hinge, ..."),
    "label_smoothing": ("loss.label_smoothing={v}", "loss=dpo's conservative DPO, or loss=robust"),
    "rpo_alpha": ("loss=rpo loss.alpha={v}", "RPO is its own loss option"),
    "ld_alpha": ("loss=ld_dpo loss.alpha={v}", "LD-DPO wraps another loss (loss.loss)"),
    "use_weighting": ("loss=wpo", "WPO wraps another loss (loss.loss)"),
    "f_divergence_type": ("loss=fdpo loss.divergence={v}", "f-DPO is its own loss option"),
    "reference_free": ("loss=dpo loss.reference_free={v}", "DPO with a uniform reference"),
    "per_device_train_batch_size": ("data.batch_size={v}", "pairs per micro-batch on each device"),
    "per_device_eval_batch_size": ("data.eval_batch_size={v}", ""),
    "gradient_accumulation_steps": (
        "trainer.accumulate_grad_batches={v}",
        "or model.recipe.pairs_per_step, which sets it for any batch size and device count",
    ),
    "num_train_epochs": ("trainer.max_epochs={v}", ""),
    "max_steps": ("trainer.max_steps={v}", ""),
    "max_length": ("data.max_length={v}", "prompt + the longer response, in tokens"),
    "max_prompt_length": ("data.max_prompt_length={v}", ""),
    "truncation_mode": ("data.truncation_mode={v}", "keep_end | keep_start | drop"),
    "lr_scheduler_type": ("scheduler={v}_warmup", "linear_warmup, cosine_warmup or constant_warmup"),
    "warmup_ratio": ("model.recipe.warmup_ratio={v}", "or scheduler.warmup_ratio"),
    "warmup_steps": ("scheduler.warmup_steps={v}", ""),
    "weight_decay": ("optimizer.weight_decay={v}", ""),
    "max_grad_norm": ("trainer.gradient_clip_val={v}", ""),
    "bf16": ("trainer.precision=bf16-mixed", "the model's recipe picks bf16 on a GPU that has it"),
    "fp16": ("trainer.precision=16-mixed", ""),
    "gradient_checkpointing": ("module.activation_checkpointing={v}", ""),
    "precompute_ref_log_probs": ("module.precompute_ref={v}", "cached across runs under paths.cache_dir"),
    "sync_ref_model": ("module=tr_dpo", "TR-DPO's moving reference"),
    "ref_model_sync_steps": ("module=tr_dpo module.ref_sync_steps={v}", ""),
    "ref_model_mixup_alpha": ("module=tr_dpo module.ref_sync_alpha={v}", ""),
    "padding_free": ("data.packing={v}", "packed pairs, the prompt computed once (on by default)"),
    "logging_steps": ("trainer.log_every_n_steps={v}", ""),
    "eval_steps": ("trainer.val_check_interval={v}", "an int: every that many batches"),
    "save_steps": ("callbacks.periodic_checkpoint.every_n_train_steps={v}", ""),
    "report_to": ("logger={v}", "csv, wandb, mlflow, tensorboard or none"),
    "output_dir": ("hydra.run.dir={v}", "every output of the run is under it"),
    "model_name_or_path": ("model.name_or_path={v}", "a Hub id or a local folder"),
    "dataset_name": ("data=preference data.path={v}", "a Hub id, a file or a folder"),
    "use_peft": ("peft=lora", ""),
    "lora_r": ("peft=lora peft.r={v}", ""),
    "lora_alpha": ("peft=lora peft.alpha={v}", ""),
}


def trl_hint(override: str) -> str | None:
    """For a command-line override whose key is a TRL name (`learning_rate=1e-6`), the line saying what to write
    here; None for any other override (ours, Hydra's, `+key=...` appends)."""
    if override.startswith(("-", "+", "~")) or "=" not in override:
        return None
    key, value = override.split("=", 1)
    if key not in TRL_KEYS:
        return None
    ours, note = TRL_KEYS[key]
    return f"{key} is TRL's name; here it is {ours.format(v=value)}" + (f" ({note})" if note else "")
