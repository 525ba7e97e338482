"""The run follows the machine and the model's scale: the design card's command resolved with and without a GPU
(mocked), each model option's recipe, the warnings, and the memory estimate and plan against hand-computed figures."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from conftest import compose
from dpo_lightning.config import ConfigError, validate_config
from dpo_lightning.config.memory import GiB, Setup, Shape, estimate, lora_parameters, plan_memory, setup_of
from dpo_lightning.config.recipes import describe_trainer, recipe_warnings

DESIGN_CARD = ("model=mistral", "data=shp", "loss.beta=0.1")


def fake_gpu(monkeypatch, gib: float = 80, bf16: bool = True, name: str = "NVIDIA H100 80GB HBM3") -> None:
    """CUDA visible: one device of `gib` GiB (nothing runs on it; only what the config resolves is checked)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    props = SimpleNamespace(name=name, total_memory=int(gib * GiB))
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda *a: props)


def resolved(*overrides: str):
    cfg = compose(*overrides)
    return OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))


def test_the_design_card_command_without_a_gpu_trains_on_the_cpu_in_fp32_at_the_7b_recipe():
    cfg = resolved(*DESIGN_CARD)
    assert (cfg.trainer.accelerator, cfg.trainer.precision, cfg.trainer.devices) == ("cpu", "32-true", 1)
    assert cfg.optimizer.lr == 5e-7  # Zephyr-7B-beta's full DPO, not the 135M model's 3e-5
    assert cfg.scheduler.warmup_ratio == 0.1 and cfg.module.activation_checkpointing is True
    assert cfg.trainer.accumulate_grad_batches == 128 // 4  # 128 pairs a step from SHP's 4-pair batches
    assert cfg.model.dtype == "float32" and cfg.loss.beta == 0.1


def test_the_design_card_command_with_a_gpu_trains_on_it_in_bf16_mixed(monkeypatch):
    fake_gpu(monkeypatch)
    cfg = resolved(*DESIGN_CARD)
    assert (cfg.trainer.accelerator, cfg.trainer.precision, cfg.trainer.devices) == ("gpu", "bf16-mixed", 1)
    assert cfg.optimizer.lr == 5e-7 and cfg.module.activation_checkpointing is True
    assert cfg.trainer.accumulate_grad_batches == 32 and cfg.model.dtype == "float32"  # fp32 master weights
    lora = resolved(*DESIGN_CARD, "peft=lora")
    assert lora.optimizer.lr == 5e-6 and lora.model.dtype == "bfloat16"  # Zephyr's QLoRA lr; a frozen bf16 base
    fake_gpu(monkeypatch, bf16=False, name="Tesla V100")
    assert resolved(*DESIGN_CARD).trainer.precision == "16-mixed"  # no bf16 on the GPU: fp16 mixed


def test_trainer_options_still_force_a_device(monkeypatch):
    assert resolved("trainer=gpu").trainer.accelerator == "gpu"  # forced, though this machine has no GPU
    fake_gpu(monkeypatch)
    forced = compose("trainer=cpu", *DESIGN_CARD)
    assert (forced.trainer.accelerator, forced.trainer.precision) == ("cpu", "32-true")
    assert "forced" in describe_trainer(forced) and "H100" in describe_trainer(forced)
    assert "trainer=auto" in describe_trainer(compose(*DESIGN_CARD))
    warned = recipe_warnings(forced)
    assert len(warned) == 1 and "trains on the CPU (trainer.accelerator=cpu)" in warned[0]
    # several devices: the accumulation keeps the step at the recipe's pairs
    assert resolved("trainer=ddp_cpu", *DESIGN_CARD).trainer.accumulate_grad_batches == 128 // (4 * 2)


def test_a_learning_rate_far_from_the_recipe_is_warned_before_anything_loads(caplog):
    cfg = compose(*DESIGN_CARD, "optimizer.lr=1e-4", "data.path=/tmp/shp.jsonl")
    (warning,) = recipe_warnings(cfg)
    assert "optimizer.lr=0.0001" in warning and "model.recipe.lr=5e-07" in warning and "7.2B" in warning
    assert "wreck" in warning
    assert recipe_warnings(compose(*DESIGN_CARD)) == []  # the recipe's own value
    lora = recipe_warnings(compose(*DESIGN_CARD, "peft=lora", "optimizer.lr=1e-7"))
    assert len(lora) == 1 and "model.recipe.lora_lr=5e-06" in lora[0] and "barely move" in lora[0]
    with caplog.at_level(logging.WARNING):
        assert validate_config(compose("peft=none", "optimizer.lr=1e-2")) and "model.recipe.lr=3e-05" in caplog.text


def test_each_stage_is_checked_against_its_own_recipe():
    """The SFT stage's 2e-5 is Mistral's SFT recipe, not 40x its DPO lr (the issue's false warning)."""
    assert recipe_warnings(compose("model=mistral", "stage=sft")) == []
    (warning,) = recipe_warnings(compose("model=mistral", "stage=sft", "optimizer.lr=1e-3"))
    assert "for SFT full fine-tuning (model.recipe.sft_lr=2e-05" in warning
    (warning,) = recipe_warnings(compose("model=mistral", "optimizer.lr=2e-5"))  # the DPO stage at SFT's rate
    assert "for DPO full fine-tuning (model.recipe.lr=5e-07" in warning


def test_the_default_is_the_embedded_models_measured_pipeline_and_other_models_train_full_dpo():
    """`python train.py`: full SFT (the default `before`), then LoRA DPO with RPO's NLL term at alpha 0.1
    (`loss=rpo_light`, the main job's DPO stage, docs/main_job.md); every other loaded model option stays full DPO,
    and the SFT stage, the reward model and the full-fine-tuning experiments keep every weight trainable unless
    peft= is given."""
    dpo, sft = resolved(), resolved("stage=sft")
    assert dpo.before == {"sft": ["stage=sft"]}
    assert dpo.peft._target_.endswith("wrap_lora") and dpo.optimizer.lr == 5e-4  # model.recipe.lora_lr
    assert dpo.loss._target_.endswith("RPOLoss") and (dpo.loss.alpha, dpo.loss.beta) == (0.1, 0.1)
    assert not sft.peft and sft.loss._target_.endswith("SFTLoss") and sft.optimizer.lr == 5e-5  # full SFT
    assert resolved("stage=sft", "peft=lora").peft  # the command line's adapter reaches the SFT stage too
    full = resolved("peft=none", "loss=dpo")
    assert not full.peft and full.loss._target_.endswith(".DPOLoss") and full.optimizer.lr == 3e-5
    for name in ("gpt2", "pythia_2_8b", "qwen2_5_0_5b", "mistral", "llama3_8b"):
        cfg = compose(f"model={name}")
        assert not cfg.peft and cfg.loss._target_.endswith(".DPOLoss"), name
    for overrides in (("experiment=main_sft",), ("experiment=hh_sft",), ("experiment=hh_dpo_from_sft",)):
        assert not compose(*overrides).peft, overrides
    assert compose("experiment=main").loss.alpha == 0.1  # the main job keeps its own alpha


def test_every_model_option_carries_a_complete_recipe():
    keys = {
        "parameters",
        "lr",
        "lora_lr",
        "sft_lr",
        "sft_lora_lr",
        "warmup_ratio",
        "pairs_per_step",
        "dtype",
        "lora_dtype",
        "precision",
    }
    keys |= {"activation_checkpointing", "hidden_size", "intermediate_size", "kv_size", "layers"}
    for name in ("smollm2_135m", "tiny", "gpt2", "pythia_2_8b", "qwen2_5_0_5b", "mistral", "llama3_8b", "random"):
        recipe = compose(f"model={name}").model.recipe
        assert keys <= set(recipe), (name, keys - set(recipe))
        assert recipe.lora_lr >= recipe.lr, name
    big = [compose(f"model={n}").model.recipe for n in ("mistral", "llama3_8b")]
    assert all(r.parameters > 7e9 and r.lr <= 1e-6 and r.pairs_per_step >= 64 for r in big)
    # the random 8B shape is the 8B model's recipe, number for number
    assert compose("model=random_8b").model.recipe == compose("model=llama3_8b").model.recipe
    assert compose("model=random_8b").model.shape == "llama3_8b"


def test_the_memory_estimate_of_a_7b_and_an_8b_model_by_hand():
    # Mistral-7B, full DPO, fp32 master weights, a live frozen copy as the reference, AdamW, bf16 activations with
    # checkpointing, 8 pairs of 512 tokens (16 rows x 512 = 8192 tokens a micro-batch)
    n, h, i, kv, layers, tokens = 7.24e9, 4096, 14336, 1024, 32, 8 * 2 * 512
    mistral = setup_of(compose("model=mistral", "trainer.precision=bf16-mixed"))
    assert mistral == Setup(Shape(n, h, i, kv, layers), 4, None, 2, True, False, True, tokens, 2)
    e = estimate(mistral)
    assert (e.weights, e.gradients, e.optimizer, e.reference) == (4 * n, 4 * n, 8 * n, 4 * n)
    assert e.activations == 34 * tokens * h + 2 * tokens * h * layers  # one layer whole, every layer's input
    assert e.total == pytest.approx(20 * n + 3_288_334_336)
    # LoRA r 16 on every linear layer: r x (in + out) for q, o, k, v, gate, up, down, in each of 32 blocks
    adapters = 16 * 32 * ((h + h) * 2 + (h + kv) * 2 + (h + i) * 2 + (i + h))
    assert lora_parameters(mistral.shape, 16) == adapters == 41_943_040
    lora = estimate(setup_of(compose("model=mistral", "peft=lora", "trainer.precision=bf16-mixed")))
    assert lora.weights == 2 * n + 4 * adapters and lora.reference == 0 and lora.optimizer == 8 * adapters
    # Llama-3-8B on the low-memory path (reference precomputed and freed): 16 bytes a parameter
    n8 = 8.03e9
    low = estimate(setup_of(compose("model=llama3_8b", "experiment=low_memory", "trainer.precision=bf16-mixed")))
    assert (low.weights + low.gradients + low.optimizer, low.reference) == (16 * n8, 0)
    assert low.total / GiB == pytest.approx((16 * n8 + 3_288_334_336) / GiB)


def test_the_memory_plan_takes_the_low_memory_path_or_says_what_to_add(monkeypatch):
    fake_gpu(monkeypatch, gib=80)
    cfg = compose(*DESIGN_CARD, "data.path=/tmp/shp.jsonl")
    with pytest.raises(ConfigError) as error:  # 138 GiB live, 111 GiB low-memory: neither fits 80 GiB
        plan_memory(cfg)
    message = str(error.value)
    assert "peft=lora" in message and "trainer=fsdp trainer.devices=2" in message and "GiB" in message
    assert "fits" in plan_memory(compose(*DESIGN_CARD, "peft=lora"))  # 17 GiB
    fake_gpu(monkeypatch, gib=141, name="NVIDIA H200")
    cfg = compose(*DESIGN_CARD)
    assert "low-memory path" in plan_memory(cfg)
    assert cfg.module.precompute_ref is True and cfg.module.activation_checkpointing is True
    small = compose()  # the embedded 135M model: nothing to change
    assert "fits" in plan_memory(small) and small.module.precompute_ref is False


def test_the_recipe_reaches_the_built_objects():
    cfg = compose("model=mistral", "peft=lora")
    optimizer = instantiate(cfg.optimizer)([torch.nn.Parameter(torch.zeros(1))])
    assert optimizer.param_groups[0]["lr"] == 5e-6
    schedule = instantiate(compose("model=gpt2").scheduler)(optimizer, num_training_steps=1000)
    assert schedule.lr_lambdas[0](149) < 1.0 == schedule.lr_lambdas[0](150)  # the DPO paper's 150 warmup steps
