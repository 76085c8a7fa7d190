from __future__ import annotations

import dataclasses
import typing

import pytest
import yaml

from seqstruct.config import (
    PACKAGED_CONFIGS,
    ConfigError,
    ContrastiveConfig,
    DistillConfig,
    PretrainConfig,
    Range,
    _constraints,
    load_config,
    save_config,
)


def test_yaml_then_overrides_then_saved(tmp_path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  preset: tiny\ntrain:\n  learning_rate: 1e-3\n  max_steps: 5\n")
    config = load_config(PretrainConfig, path, ["train.max_steps=7", "data.fasta=x.fa"])
    assert config.model.preset == "tiny" and config.train.max_steps == 7 and config.data.fasta == "x.fa"
    assert config.train.learning_rate == pytest.approx(1e-3)  # YAML 1.1 reads 1e-3 as a string
    save_config(config, tmp_path / "out.yaml")
    assert load_config(PretrainConfig, tmp_path / "out.yaml") == config
    assert yaml.safe_load((tmp_path / "out.yaml").read_text())["train"]["max_steps"] == 7


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.bogus=1", "unknown config key(s) ['train.bogus']"),
        ("train.max_steps=ten", "config key 'train.max_steps': expected int, got 'ten'"),
        ("train.max_steps", "expected key=value"),
        ("model=3", "config section 'model': expected a mapping"),
    ],
)
def test_bad_values_name_the_key(override: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(PretrainConfig, None, [override])
    assert message in str(err.value)


def test_mappings_keep_the_order_they_were_written_in(tmp_path) -> None:
    # a comparison's first arm is its reference, so `arms` must not come back sorted
    from seqstruct.experiments.compare import CompareConfig

    path = tmp_path / "compare.yaml"
    path.write_text("synth: cliques\narms:\n  zeta: []\n  alpha: []\n", encoding="utf-8")
    config = load_config(CompareConfig, path, ["seeds=[0]"])
    assert list(config.arms) == ["zeta", "alpha"]


# ---------------------------------------------------------------------------------------------------------
# Ranges: every numeric setting checked when a config loads, the key named
# ---------------------------------------------------------------------------------------------------------

CONFIG_CLASSES = {
    "pretrain": PretrainConfig,
    "contrastive": ContrastiveConfig,
    "distill": DistillConfig,
}
# Numeric fields without a Range: checked by training.structure before any data is read, and
# tests/training/test_structure.py builds configs with out-of-range values to see that check refuse them.
UNRANGED = {"structure.weight", "structure.negatives"}


@pytest.mark.parametrize(
    ("cls", "override", "message"),
    [
        (
            PretrainConfig,
            "data.mlm_probability=1.5",
            "config key data.mlm_probability must be in (0, 1]; got 1.5",
        ),
        (
            PretrainConfig,
            "data.mlm_probability=0",
            "config key data.mlm_probability must be in (0, 1]; got 0.0",
        ),
        (
            PretrainConfig,
            "train.gradient_accumulation_steps=0",
            "config key train.gradient_accumulation_steps must be >= 1; got 0",
        ),
        (PretrainConfig, "train.logging_steps=0", "config key train.logging_steps must be >= 1; got 0"),
        (
            PretrainConfig,
            "train.max_steps=-1",
            "config key train.max_steps must be >= 1 (0 and -1 would not train max_steps steps); got -1",
        ),
        (PretrainConfig, "train.max_steps=0", "config key train.max_steps must be >= 1"),
        (
            PretrainConfig,
            "data.eval_fraction=-0.1",
            "config key data.eval_fraction must be in [0, 1); got -0.1",
        ),
        (PretrainConfig, "data.eval_fraction=1", "config key data.eval_fraction must be in [0, 1); got 1.0"),
        (
            PretrainConfig,
            "data.max_length=2",
            "config key data.max_length must be >= 3 (one residue or word piece plus <cls> and <eos>); got 2",
        ),
        (PretrainConfig, "data.max_tokens=-1", "config key data.max_tokens must be >= 0; got -1"),
        (PretrainConfig, "train.learning_rate=0", "config key train.learning_rate must be > 0; got 0.0"),
        (PretrainConfig, "train.learning_rate=.nan", "config key train.learning_rate must be > 0; got nan"),
        (PretrainConfig, "train.max_minutes=.inf", "config key train.max_minutes must be >= 0; got inf"),
        (PretrainConfig, "train.seed=-1", "config key train.seed must be >= 0; got -1"),
        (PretrainConfig, "train.adam_beta2=1", "config key train.adam_beta2 must be in [0, 1); got 1.0"),
        (PretrainConfig, "model.dropout=1", "config key model.dropout must be in [0, 1); got 1.0"),
        (PretrainConfig, "model.favor.num_features=0", "config key model.favor.num_features must be >= 1"),
        (PretrainConfig, "structure.temperature=0", "config key structure.temperature must be > 0"),
        (
            PretrainConfig,
            "train.precision=fp16",
            "config key train.precision must be one of ['auto', 'fp32', 'bf16']",
        ),
        (PretrainConfig, "train.optim=sgdd", "config key train.optim must be one of ['adamw_torch'"),
        (ContrastiveConfig, "dropout=1.0", "config key dropout must be in [0, 1); got 1.0"),
        (ContrastiveConfig, "eval_pairs=-1", "config key eval_pairs must be >= 0; got -1"),
        (
            ContrastiveConfig,
            "train.pooling_learning_rate=-1",
            "config key train.pooling_learning_rate must be >= 0",
        ),
        (ContrastiveConfig, "train.max_steps=0", "config key train.max_steps must be >= 1"),
        (
            DistillConfig,
            "data.heldout_fraction=0",
            "config key data.heldout_fraction must be in (0, 1); got 0.0",
        ),
        (
            DistillConfig,
            "data.pairs=1",
            "config key data.pairs must be >= 2 (a Spearman correlation needs two pairs)",
        ),
        (DistillConfig, "train.eval_steps=0", "config key train.eval_steps must be >= 1; got 0"),
        (
            DistillConfig,
            "targets.min_mean_cosine=1.5",
            "config key targets.min_mean_cosine must be in [-1, 1]",
        ),
    ],
)
def test_out_of_range_values_are_refused_at_load_naming_the_key(cls, override: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(cls, None, [override])
    assert str(err.value).startswith(f"<defaults>: {message}")


def test_an_unknown_scheduler_is_refused_at_load_with_transformers_names() -> None:
    from transformers.trainer_utils import SchedulerType

    with pytest.raises(ConfigError) as err:
        load_config(PretrainConfig, None, ["train.lr_scheduler=bogus"])
    names = [s.value for s in SchedulerType]
    assert str(err.value) == f"<defaults>: config key train.lr_scheduler must be one of {names}; got 'bogus'"
    for name in names:  # every one of transformers' schedulers is taken
        assert load_config(PretrainConfig, None, [f"train.lr_scheduler={name}"]).train.lr_scheduler == name


@pytest.mark.parametrize(
    "override",
    [
        "data.max_length=3",
        "data.eval_fraction=0",
        "data.mlm_probability=1",
        "train.max_steps=1",
        "train.warmup_steps=0",
        "data.max_tokens=0",
        "train.max_minutes=0",
        "model.dropout=0",
        "train.min_lr_ratio=0.1",
    ],
)
def test_values_on_a_range_boundary_load(override: str) -> None:
    key, value = override.split("=")
    section, name = key.split(".")
    config = load_config(PretrainConfig, None, [override])
    assert getattr(getattr(config, section), name) == float(value)


def test_an_optional_setting_left_unset_is_not_range_checked() -> None:
    assert load_config(ContrastiveConfig, None, ["dropout=null"]).dropout is None
    assert load_config(ContrastiveConfig, None, ["dropout=0.1"]).dropout == pytest.approx(0.1)


def _numeric_fields(cls: type, prefix: str = "") -> list[tuple[str, type, str]]:
    """(key, class, field name) of every int or float field of `cls` and its sections."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            out += _numeric_fields(hint, f"{prefix}{f.name}.")
        elif {int, float} & {hint, *typing.get_args(hint)}:
            out.append((prefix + f.name, cls, f.name))
    return out


@pytest.mark.parametrize("name", CONFIG_CLASSES)
def test_every_numeric_setting_has_a_range_and_every_default_lies_in_it(name: str) -> None:
    cls = CONFIG_CLASSES[name]
    missing = []
    for key, owner, field_name in _numeric_fields(cls):
        hint = typing.get_type_hints(owner, include_extras=True)[field_name]
        ranges = [m for m in _constraints(hint) if isinstance(m, Range)]
        if not ranges and key not in UNRANGED:
            missing.append(key)
    assert missing == [], f"{name}: numeric settings without a Range: {missing}"
    load_config(cls)  # defaults are checked as well as given values


def test_packaged_configs_load_with_their_classes() -> None:
    from seqstruct.experiments.compare import CompareConfig
    from seqstruct.experiments.curve import CurveConfig

    loaded = []
    for path in sorted(PACKAGED_CONFIGS.glob("*.yaml")):
        if path.name.startswith(("compare-", "demo-compare")):
            config = load_config(CompareConfig, path)
            # the run settings a comparison trains each arm with, as compare loads them
            trainer = ContrastiveConfig if getattr(config, "trainer", "") == "contrastive" else PretrainConfig
            load_config(trainer, PACKAGED_CONFIGS / config.pretrain, list(config.pretrain_overrides))
        elif path.name.startswith("curve-"):
            load_config(CurveConfig, path)
        elif path.name.startswith("distill-"):
            load_config(DistillConfig, path)
        elif path.name.startswith("contrastive-"):
            load_config(ContrastiveConfig, path)
        else:
            load_config(PretrainConfig, path)
        loaded.append(path.name)
    assert len(loaded) >= 18


# ---------------------------------------------------------------------------------------------------------
# The YAML file itself
# ---------------------------------------------------------------------------------------------------------


def test_a_config_with_a_utf8_bom_loads(tmp_path) -> None:
    path = tmp_path / "c.yaml"
    path.write_bytes(b"\xef\xbb\xbftrain:\n  max_steps: 5\n")
    assert load_config(PretrainConfig, path).train.max_steps == 5


def test_a_directory_or_binary_file_as_config_is_refused_by_name(tmp_path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(PretrainConfig, tmp_path)
    assert str(err.value) == f"{tmp_path}: is a directory; expected a YAML config file"
    binary = tmp_path / "c.yaml"
    binary.write_bytes(b"train:\x00\x01\x02")
    with pytest.raises(ConfigError) as err:
        load_config(PretrainConfig, binary)
    assert (
        str(err.value) == f"{binary}, line 1: binary data (a NUL byte), not text; expected a YAML config file"
    )
