"""Every option of every config group composes and instantiates; the documented commands compose right."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from transformers import AutoTokenizer

from conftest import CONF, ROOT, compose, options
from dpo_lightning.config import ConfigError, validate_config

# conf/hydra: plugin options; conf/judge, conf/online: evaluate.py's and train_online.py's groups, tested apart
GROUPS = sorted(p.name for p in CONF.iterdir() if p.is_dir() and p.name not in ("hydra", "judge", "online"))


def test_every_group_has_its_options():
    expected = {
        "model": {"smollm2_135m", "tiny", "gpt2", "pythia_2_8b", "llama3_8b", "mistral", "qwen2_5_0_5b"},
        "data": {"builtin", "hh", "shp", "jsonl", "preference", "mixture"},
        "loss": {
            "dpo",
            "ipo",
            "hinge",
            "robust",
            "simpo",
            "orpo",
            "rpo",
            "rpo_light",
            "rpo_sft",
            "bco_pair",
            "apo_zero",
            "apo_down",
            "sppo_hard",
            "nca_pair",
            "exo_pair",
            "sft",
        },
        "trainer": {"cpu", "gpu", "ddp", "fsdp", "deepspeed"},
        "logger": {"wandb", "csv", "tensorboard", "none"},
        "peft": {"none", "lora"},
        "optimizer": {"adamw", "rmsprop"},
    }
    for group, names in expected.items():
        assert names <= set(options(group)), group


@pytest.mark.parametrize("name", options("loss"))
def test_loss_options(name):
    loss = instantiate(compose(f"loss={name}").loss)
    assert loss.beta > 0 and hasattr(loss, "requires_reference")


LOADED_MODELS = [name for name in options("model") if not name.startswith("random")]  # random*: built, not loaded


@pytest.mark.parametrize("name", LOADED_MODELS)
def test_model_options_compose_and_load_from_a_local_path(name, tiny_model_dir):
    cfg = compose(f"model={name}")
    assert cfg.model._target_.startswith("dpo_lightning.models.")
    assert cfg.model.get("trust_remote_code", False) is False
    loaded = instantiate(compose(f"model={name}", f"model.name_or_path={tiny_model_dir}").model)
    assert loaded.model.config.model_type == "llama" and loaded.tokenizer.eos_token_id is not None


@pytest.mark.parametrize("shape, parameters", [("llama1b", 1_235_814_400), ("llama3_8b", 8_030_261_248)])
def test_random_shapes_are_the_real_models(shape, parameters):
    from dpo_lightning.models.random_init import llama_config

    config = llama_config(shape)  # Llama-3.2-1B (tied head) and Llama-3-8B (untied), 8 key/value heads each
    hidden, vocab, layers = config.hidden_size, config.vocab_size, config.num_hidden_layers
    kv = config.num_key_value_heads * hidden // config.num_attention_heads
    per_layer = 2 * hidden * hidden + 2 * hidden * kv + 3 * hidden * config.intermediate_size + 2 * hidden
    heads = 1 if config.tie_word_embeddings else 2
    assert heads * vocab * hidden + layers * per_layer + hidden == parameters


def test_random_model_option_builds_its_shape():
    loaded = instantiate(compose("model=random", "model.shape=tiny", "model.dtype=float32").model)
    assert loaded.model.config.hidden_size == 64 and loaded.tokenizer.eos_token_id is not None
    assert next(loaded.model.parameters()).dtype == torch.float32


def test_model_hub_ids():
    ids = {name: compose(f"model={name}").model.name_or_path for name in LOADED_MODELS if name != "tiny"}
    assert ids["mistral"] == "mistralai/Mistral-7B-v0.1" and ids["pythia_2_8b"] == "EleutherAI/pythia-2.8b"
    assert ids["smollm2_135m"] == "embedded:smollm2-135m-instruct"
    assert compose("model=llama3_8b").model.dtype == "float32"  # full fine-tuning: fp32 master weights
    assert compose("model=llama3_8b", "peft=lora").model.dtype == "bfloat16"  # a frozen base under an adapter


@pytest.mark.parametrize("name", options("data"))
def test_data_options(name, tokenizer, tmp_path):
    (tmp_path / "p.jsonl").write_text('{"prompt": "p", "chosen": "a", "rejected": "b"}\n')
    (tmp_path / "problems.jsonl").write_text('{"prompt": "2 + 2?", "answer": "4"}\n')
    (tmp_path / "unpaired.jsonl").write_text('{"prompt": "p", "completion": "a", "label": true}\n')
    files = {"jsonl": "p.jsonl", "preference": "p.jsonl", "problems": "problems.jsonl", "unpaired": "unpaired.jsonl"}
    extra = [f"data.path={tmp_path / files[name]}"] if name in files else []  # the options that need a file
    dm = instantiate(compose(f"data={name}", *extra).data, tokenizer=tokenizer)
    assert dm.batch_size > 0 and dm.pair_tokenizer.max_length > dm.pair_tokenizer.max_prompt_length


@pytest.mark.parametrize("name", options("trainer"))
def test_trainer_options(name, tmp_path):
    cfg = compose(f"trainer={name}")
    assert cfg.trainer._target_ == "lightning.Trainer"
    strategy = cfg.trainer.strategy
    if name.startswith("deepspeed") and importlib.util.find_spec("deepspeed") is None:
        pytest.skip("deepspeed is not installed (pip install deepspeed on a GPU machine)")
    if not isinstance(strategy, str):
        assert instantiate(strategy) is not None  # the strategy object itself builds here
    if name in ("cpu",) or not torch.cuda.is_available():
        cfg = compose(
            f"trainer={name}",
            "trainer.accelerator=cpu",
            "trainer.devices=1",
            "trainer.precision=32-true",
            *(["trainer.strategy=auto"] if name == "fsdp" or name.startswith("deepspeed") else []),
        )
    trainer = instantiate(cfg.trainer, logger=False, enable_checkpointing=False, default_root_dir=str(tmp_path))
    assert trainer.max_epochs == 1


@pytest.mark.parametrize("name", options("logger"))
def test_logger_options(name, tmp_path):
    loggers = [instantiate(c) for c in (compose(f"logger={name}", output_dir=tmp_path).get("logger") or {}).values()]
    if name == "none":
        assert loggers == []
    else:
        assert any(type(lg).__name__ == "CSVLogger" for lg in loggers)  # every logger option keeps the CSV file
    if name == "wandb":
        assert any(type(lg).__name__ == "WandbLogger" for lg in loggers)


@pytest.mark.parametrize("group", ["optimizer", "scheduler", "peft", "callbacks", "module", "paths"])
def test_other_group_options(group, tmp_path):
    for name in options(group):
        cfg = compose(f"{group}={name}", output_dir=tmp_path)
        node = cfg.get(group)
        if group == "optimizer":
            opt = instantiate(node)([torch.nn.Parameter(torch.zeros(2))])
            assert opt.param_groups[0]["lr"] > 0
        elif group == "scheduler":
            opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=1.0)
            sched = instantiate(node)(opt, num_training_steps=10)
            assert 0 < sched.get_last_lr()[0] <= 1.0
        elif group == "peft" and node:
            assert callable(instantiate(node))
        elif group == "callbacks":
            assert all(instantiate(c) is not None for c in (node or {}).values())
        elif group == "module":
            modules = {"reward": "dpo_lightning.lightning.reward.RewardModule"}
            assert node._target_ == modules.get(name, "dpo_lightning.DPOModule")
            if name == "fast":  # the host-light step: the default module with three switches on
                assert node.compile and node.sync_free and node.head_vocab_chunk_size == "auto"
        elif group == "paths":
            assert node.output_dir == str(tmp_path)


def test_the_reward_config_composes_train_yaml_with_a_reward_module(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # no Hub here: the reachability probe is skipped offline
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = hydra_compose("reward", overrides=["paths.output_dir=unused", "data=hh", "peft=lora"])
    assert "loss" not in cfg and cfg.module._target_ == "dpo_lightning.lightning.reward.RewardModule"
    assert cfg.data.packing is False and cfg.data.format._target_.endswith("HHFormat") and cfg.peft.r == 16
    assert cfg.optimized_metric == "val/accuracy" and cfg.callbacks.sample_generations.num_prompts == 0
    validate_config(cfg)


def test_experiment_option_composes():
    cfg = compose("experiment=hh_pythia")
    assert cfg.model.name_or_path == "EleutherAI/pythia-2.8b" and cfg.data.format._target_.endswith("HHFormat")
    assert cfg.trainer.accumulate_grad_batches * cfg.data.batch_size == 64


def test_the_main_jobs_stages_compose_and_take_another_loss():
    """make train: experiment=main_sft, then experiment=main (RPO alpha 0.1, LoRA); its ARGS may switch the loss."""
    from hydra.utils import instantiate

    sft = compose("experiment=main_sft")
    assert sft.loss._target_.endswith("SFTLoss") and sft.optimizer.lr == 5e-5 and not sft.module.compute_kl
    main = compose("experiment=main", "model.init_from=/runs/sft")
    assert (main.loss.alpha, main.optimizer.lr, main.model.init_from) == (0.1, 5e-4, "/runs/sft")
    assert type(instantiate(main.loss)).__name__ == "RPOLoss"
    ipo = instantiate(compose("experiment=main", "loss=ipo", "loss.beta=0.5").loss)  # the README's ARGS example
    assert type(ipo).__name__ == "IPOLoss" and ipo.beta == 0.5


def test_the_readme_command_composes():
    # python train.py model=mistral data=shp loss.beta=0.1
    cfg = compose("model=mistral", "data=shp", "loss.beta=0.1")
    assert cfg.model.name_or_path == "mistralai/Mistral-7B-v0.1"
    assert cfg.data.format._target_ == "dpo_lightning.data.SHPFormat" and cfg.data.path == "stanfordnlp/SHP"
    assert cfg.loss.beta == 0.1 and cfg.loss._target_ == "dpo_lightning.core.losses.DPOLoss"
    assert OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves


@pytest.mark.parametrize(
    "override, key",
    [
        ("loss.beta=0", "loss.beta"),
        ("loss.beta=-1", "loss.beta"),
        ("loss.label_smoothing=0.5", "loss.label_smoothing"),
        ("data.max_prompt_length=600", "data.max_prompt_length"),
        ("data.path=./missing.jsonl", "data.path"),
        ("data.path=data/missing.jsonl.gz", "data.path"),
        ("data.on_bad_row=ignore", "data.on_bad_row"),
        ("data.truncation_mode=middle", "data.truncation_mode"),
        ("model.name_or_path=/no/such/model", "model.name_or_path"),
        ("model.name_or_path='not a hub id!'", "model.name_or_path"),
        ("data.streaming=true", "trainer.max_steps"),
        ("data.shuffle_buffer=0", "data.shuffle_buffer"),
    ],
)
def test_bad_config_is_refused_before_loading_anything(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        validate_config(compose(override))


def test_bad_config_messages_name_the_allowed_range(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # no Hub here: the reachability probe is skipped offline
    with pytest.raises(ConfigError, match=r"loss\.beta must be > 0, got -1"):
        validate_config(compose("loss.beta=-1"))
    with pytest.raises(ConfigError, match=r"must be in \[0, 0\.5\)"):
        validate_config(compose("loss.label_smoothing=0.7"))
    with pytest.raises(ConfigError, match=r"module\.head_vocab_chunk_size .* must be an integer >= 1, got 0"):
        validate_config(compose("module.head_vocab_chunk_size=0"))
    validate_config(compose("model=mistral", "data=shp"))  # hub ids pass
    with pytest.raises(ConfigError, match=r"data\.streaming: builtin:train needs a validation source"):
        validate_config(compose("data.streaming=true", "data.val_path=null", "trainer.max_steps=5"))
    with pytest.raises(ConfigError, match=r"module\.precompute_ref .* not with data\.streaming"):
        validate_config(compose("data.streaming=true", "trainer.max_steps=5", "module.precompute_ref=true"))
    with pytest.raises(ConfigError, match=r"data\.weights: names must match data\.sources \['builtin', 'hh'\]"):
        validate_config(compose("data=mixture", "data.weights={builtin: 1, shp: 1}"))
    validate_config(
        compose("data=mixture", "data.streaming=true", "trainer.max_steps=5", "data.weights={builtin: 1, hh: 2}")
    )


def test_the_config_check_runs_each_constructors_own_checks():
    # rules that live only in the loss and the data module (never restated in config.py) still fail fast
    with pytest.raises(ConfigError, match=r"loss\.epsilon must be in \(0, 0\.5\), got 0\.7"):
        validate_config(compose("loss=exo_pair", "loss.epsilon=0.7"))
    with pytest.raises(ConfigError, match=r"data\.val_fraction must be in \(0, 1\), got 1\.5"):
        validate_config(compose("data.val_fraction=1.5"))
    with pytest.raises(ConfigError, match=r"data\.format\.on_prompt_mismatch must be"):
        validate_config(compose("data=hh", "data.format.on_prompt_mismatch=ignore"))
    with pytest.raises(ConfigError, match=r"module\.head_chunk_size .* got -3"):
        validate_config(compose("module.head_chunk_size=-3"))


def test_an_unknown_option_in_any_group_names_the_group_and_its_options():
    from hydra.errors import MissingConfigException

    for group in GROUPS:
        if group in ("experiment",):
            continue
        with pytest.raises(
            MissingConfigException, match=rf"Could not find '{group}/no_such_option'[\s\S]*Available options"
        ):
            compose(f"{group}=no_such_option")


@pytest.mark.skipif(torch.cuda.is_available(), reason="the error is for machines without a CUDA GPU")
def test_qlora_without_a_gpu_fails_before_loading_with_the_reason():
    from dpo_lightning.config import ConfigError, validate_config
    from dpo_lightning.models import build_tiny_llama

    cfg = compose("peft=qlora", "model=tiny")
    assert cfg.model.quantization == "nf4" and cfg.peft._target_ == "dpo_lightning.models.wrap_lora"
    with pytest.raises(ConfigError, match="needs? a CUDA GPU.*Use peft=lora"):
        validate_config(cfg)
    with pytest.raises(ValueError, match="CUDA GPU"):
        build_tiny_llama(quantization="nf4")


def test_packing_with_an_attention_that_takes_no_4d_mask_is_refused_before_loading():
    cfg = compose("model=smollm2_135m", "model.attn_implementation=flash_attention_2")
    with pytest.raises(ConfigError, match="data.packing=true needs an attention that takes a 4D mask"):
        validate_config(cfg)
    validate_config(compose("model=smollm2_135m", "model.attn_implementation=flash_attention_2", "data.packing=false"))


def test_every_judge_option_composes_into_eval_yaml_and_builds(tiny_model_dir):
    """conf/judge/: reward (a reward-model folder), llm (a chat model, here the tiny one) and auto (a reward model
    trained for the evaluation: its training settings are what evaluate.py reads before building it)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from dpo_lightning.judges.llm import LLMJudge
    from dpo_lightning.judges.reward import RewardJudge

    def judge(*overrides):
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            return hydra_compose("eval", overrides=["run_dir=unused", *overrides]).get("judge")

    assert judge() is None  # no judge by default
    auto = judge("judge=auto")
    assert auto._target_.endswith("RewardJudge") and auto.model.data == "auto"
    assert auto.model._target_ == "dpo_lightning.tasks.judge_training.trained_judge"  # the task that trains it
    from transformers import LlamaConfig, LlamaForSequenceClassification

    folder = tiny_model_dir.parent / "tiny-classifier"
    LlamaForSequenceClassification(
        LlamaConfig(
            vocab_size=49152,
            hidden_size=8,
            intermediate_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_labels=1,
            pad_token_id=0,
        )
    ).save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(folder)
    reward = instantiate(judge("judge=reward", f"judge.model={folder}"))(device="cpu", batch_size=2)
    assert isinstance(reward, RewardJudge) and reward.compare(["q"], ["a"], ["b"]).outcomes.shape == (1,)
    llm = instantiate(judge("judge=llm", f"judge.model={tiny_model_dir}"))(device="cpu", batch_size=2)
    assert isinstance(llm, LLMJudge) and llm.compare(["q"], ["a"], ["b"]).consistent.shape == (1,)


def test_an_installed_package_ships_its_configs_templates_and_data(tmp_path):
    """The wheel holds conf/ (as dpo_lightning/conf, where `config.config_dir` finds it), the model-card templates
    and the built-in set with its judge split: judge=auto composes conf/reward.yaml from an installed package too."""
    import shutil
    import subprocess
    import sys
    import zipfile

    from dpo_lightning.config import config_dir

    assert (config_dir() / "reward.yaml").is_file() and (config_dir() / "judge" / "auto.yaml").is_file()
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "-q",
        "--no-deps",
        "--no-build-isolation",
        str(ROOT),
        "-w",
        str(tmp_path),
    ]
    leftover = not (ROOT / "build").exists()  # setuptools builds in <repo>/build: removed again if it was not there
    try:
        subprocess.run(cmd, check=True, capture_output=True, cwd=tmp_path)
    finally:
        if leftover:
            shutil.rmtree(ROOT / "build", ignore_errors=True)
    names = set(zipfile.ZipFile(next(tmp_path.glob("dpo_lightning-*.whl"))).namelist())
    for name in (
        "dpo_lightning/conf/train.yaml",
        "dpo_lightning/conf/reward.yaml",
        "dpo_lightning/conf/judge/auto.yaml",
        "dpo_lightning/conf/module/fast.yaml",
        "dpo_lightning/templates/policy_card.md",
        "dpo_lightning/templates/reward_card.md",
        "dpo_lightning/data/builtin/judge.jsonl",
    ):
        assert name in names, name
