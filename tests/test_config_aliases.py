"""Hugging Face TrainingArguments / TRL key names accepted as aliases of alignkit's config keys."""

from __future__ import annotations

import pytest
import yaml

from alignkit.cli import main
from alignkit.config import ConfigError, SFTConfig, load_config
from alignkit.methods.dpo import DPOConfig
from alignkit.methods.grpo import GRPOConfig
from alignkit.methods.kto import KTOConfig
from alignkit.methods.online_dpo import OnlineDPOConfig
from alignkit.methods.ppo import PPOConfig
from tests.helpers import sft_rows, write_jsonl


def test_training_arguments_names_as_overrides():
    cfg = load_config(SFTConfig, None, [
        "learning_rate=1e-4", "per_device_train_batch_size=8", "gradient_accumulation_steps=2",
        "num_train_epochs=3", "lr_scheduler_type=cosine", "save_total_limit=3", "model_name_or_path=tiny-random",
        "max_seq_length=128", "neftune_noise_alpha=5", "resume_from_checkpoint=false",
        # the ones alignkit already spells the same way keep working
        "max_grad_norm=0.5", "warmup_ratio=0.1", "logging_steps=5", "save_steps=10", "seed=7", "weight_decay=0.01",
        "warmup_steps=3", "eval_steps=4", "gradient_checkpointing=true", "bf16=false", "adam_beta1=0.8",
        "adam_beta2=0.99", "output_dir=runs/x",
    ])
    assert cfg.lr == pytest.approx(1e-4)
    assert (cfg.batch_size, cfg.grad_accum, cfg.epochs) == (8, 2, 3.0)
    assert cfg.scheduler == "cosine" and cfg.keep_checkpoints == 3 and cfg.model == "tiny-random"
    assert cfg.max_length == 128 and cfg.neftune_alpha == 5 and cfg.resume is False
    assert cfg.max_grad_norm == 0.5 and cfg.adam_beta1 == 0.8 and cfg.gradient_checkpointing is True


def test_trl_yaml_per_method(tmp_path):
    def load(cls, text):
        f = tmp_path / "c.yaml"
        f.write_text(text)
        return load_config(cls, f, [])

    dpo = load(DPOConfig, "learning_rate: 5.0e-7\nbeta: 0.05\nloss_type: ipo\nper_device_train_batch_size: 2\n")
    assert dpo.loss == "ipo" and dpo.beta == 0.05 and dpo.lr == pytest.approx(5e-7) and dpo.batch_size == 2
    simpo = load(DPOConfig, "loss_type: simpo\nsimpo_gamma: 0.8\n")
    assert simpo.loss == "simpo" and simpo.gamma == 0.8

    # GRPO has its own loss_type; TRL counts completions per device, alignkit prompts
    grpo = load(GRPOConfig, "loss_type: dr_grpo\nmax_completion_length: 32\nnum_generations: 4\n"
                            "per_device_train_batch_size: 8\nepsilon_high: 0.28\nbeta: 0.04\ntemperature: 0.7\n")
    assert grpo.loss_type == "dr_grpo" and grpo.max_new_tokens == 32 and grpo.eps_high == 0.28
    assert grpo.batch_size == 2 and grpo.num_generations == 4
    assert grpo.beta == 0.04 and grpo.temperature == 0.7

    ppo = load(PPOConfig, "num_ppo_epochs: 2\nnum_mini_batches: 2\nresponse_length: 16\ncliprange: 0.1\n"
                          "vf_coef: 0.2\nkl_coef: 0.03\nmissing_eos_penalty: 1.0\ngradient_accumulation_steps: 2\n")
    assert (ppo.ppo_epochs, ppo.num_minibatches, ppo.max_new_tokens, ppo.grad_accum) == (2, 2, 16, 2)
    assert ppo.cliprange == 0.1 and ppo.vf_coef == 0.2 and ppo.kl_coef == 0.03 and ppo.missing_eos_penalty == 1.0

    online = load(OnlineDPOConfig, "loss_type: sigmoid\nmax_completion_length: 24\nper_device_train_batch_size: 3\n")
    assert online.loss == "sigmoid" and online.max_new_tokens == 24 and online.batch_size == 3


def test_grpo_batch_size_must_divide(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_config(GRPOConfig, None, ["per_device_train_batch_size=6", "num_generations=4"])
    assert "per_device_train_batch_size" in str(e.value) and "num_generations" in str(e.value)


def test_alias_only_where_the_target_exists():
    with pytest.raises(ConfigError) as e:
        load_config(SFTConfig, None, ["num_ppo_epochs=2"])
    assert "'num_ppo_epochs'" in str(e.value) and "name of 'ppo_epochs'" in str(e.value)
    with pytest.raises(ConfigError, match="'simpo_gamma'"):  # PPO's gamma is the GAE discount, not SimPO's
        load_config(PPOConfig, None, ["simpo_gamma=0.5"])
    with pytest.raises(ConfigError, match="'loss_type'"):  # KTO has no loss choice
        load_config(KTOConfig, None, ["loss_type=kto"])
    with pytest.raises(ConfigError, match="'max_completion_length'"):  # offline DPO generates nothing
        load_config(DPOConfig, None, ["max_completion_length=64"])
    with pytest.raises(ConfigError, match="'dataset_name'"):  # a hub dataset is not a data file
        load_config(SFTConfig, None, ["dataset_name=trl-lib/Capybara"])


def test_alias_and_target_together(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_config(SFTConfig, None, ["learning_rate=1e-4", "lr=3e-4"])
    assert "'learning_rate'" in str(e.value) and "'lr'" in str(e.value)
    f = tmp_path / "c.yaml"
    f.write_text("lr: 1.0e-4\nlearning_rate: 2.0e-4\n")
    with pytest.raises(ConfigError) as e:
        load_config(SFTConfig, f, [])
    assert "'learning_rate'" in str(e.value) and "'lr'" in str(e.value) and str(f) in str(e.value)
    # the same value twice is fine, however it is spelled
    f.write_text("lr: 1e-4\nlearning_rate: 0.0001\n")
    assert load_config(SFTConfig, f, []).lr == pytest.approx(1e-4)
    # an override beats the file, whichever name either uses
    f.write_text("learning_rate: 1.0e-4\nper_device_train_batch_size: 3\n")
    cfg = load_config(SFTConfig, f, ["lr=5e-4", "per_device_train_batch_size=2"])
    assert cfg.lr == pytest.approx(5e-4) and cfg.batch_size == 2
    f.write_text("lr: 1.0e-4\n")
    assert load_config(SFTConfig, f, ["learning_rate=5e-4"]).lr == pytest.approx(5e-4)


def test_unknown_key_suggestion_considers_aliases():
    with pytest.raises(ConfigError) as e:
        load_config(SFTConfig, None, ["lerning_rate=1e-4"])
    assert "unknown config key 'lerning_rate'" in str(e.value)
    assert "did you mean 'lr' (alias 'learning_rate')?" in str(e.value)
    with pytest.raises(ConfigError) as e:
        load_config(SFTConfig, None, ["per_device_train_bach_size=1"])
    assert "'batch_size' (alias 'per_device_train_batch_size')" in str(e.value)
    with pytest.raises(ConfigError, match="did you mean 'batch_size'\\?"):
        load_config(SFTConfig, None, ["bach_size=2"])


def test_bad_value_error_names_the_alias_used():
    with pytest.raises(ConfigError) as e:
        load_config(SFTConfig, None, ["save_total_limit=0"])
    assert "keep_checkpoints" in str(e.value) and "save_total_limit" in str(e.value)


def test_cli_run_with_trl_names_writes_alignkit_names(tmp_path, capsys):
    data = write_jsonl(tmp_path / "sft.jsonl", sft_rows(4))
    cfg_file = tmp_path / "trl.yaml"
    cfg_file.write_text(f"model_name_or_path: tiny-random\nlearning_rate: 1.0e-3\nper_device_train_batch_size: 2\n"
                        f"gradient_accumulation_steps: 1\nmax_length: 64\nlogging_steps: 1\noutput_dir: {tmp_path / 'run'}\n")
    assert main(["sft", str(cfg_file), f"data={data}", "max_steps=1", "learning_rate=1e-4"]) == 0
    resolved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert resolved["lr"] == pytest.approx(1e-4) and resolved["batch_size"] == 2 and resolved["model"] == "tiny-random"
    for name in ("learning_rate", "per_device_train_batch_size", "model_name_or_path", "gradient_accumulation_steps"):
        assert name not in resolved


def test_cli_messages(capsys):
    assert main(["sft", "model=tiny-random", "lerning_rate=1e-4"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: unknown config key 'lerning_rate'; did you mean 'lr' (alias 'learning_rate')?"
    assert main(["sft", "model=tiny-random", "learning_rate=1e-4", "lr=2e-4"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "'learning_rate'" in err and "'lr'" in err


def test_help_lists_aliases(capsys):
    assert main(["sft", "--help"]) == 0
    out = capsys.readouterr().out
    assert "learning_rate" in out and "per_device_train_batch_size" in out and "neftune_noise_alpha" in out
    assert "num_ppo_epochs" not in out and "loss_type" not in out
    assert main(["grpo", "--help"]) == 0
    out = capsys.readouterr().out
    assert "max_completion_length" in out and "epsilon_high" in out
    assert main(["dpo", "--help"]) == 0
    assert "loss_type" in capsys.readouterr().out
    assert main(["--help"]) == 0
    assert "learning_rate" in capsys.readouterr().out
