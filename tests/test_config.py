from __future__ import annotations

import pytest
import yaml

from seqstruct.config import ConfigError, PretrainConfig, load_config, save_config


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
    from seqstruct.compare import CompareConfig

    path = tmp_path / "compare.yaml"
    path.write_text("synth: cliques\narms:\n  zeta: []\n  alpha: []\n", encoding="utf-8")
    config = load_config(CompareConfig, path, ["seeds=[0]"])
    assert list(config.arms) == ["zeta", "alpha"]
