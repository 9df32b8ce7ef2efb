"""Config values are checked and converted by their declared types, for YAML files, recipes, presets,
checkpoints and command-line options alike (nmt/config.py: `build`, `convert`)."""

from __future__ import annotations

import dataclasses
import enum
import json
import typing
from dataclasses import dataclass, fields
from pathlib import Path

import pytest
import yaml
from conftest import run_nmt

from nmt.config import (
    DecodeConfig,
    EvalConfig,
    PrepareConfig,
    Schedule,
    TrainConfig,
    build,
    convert,
    from_dict,
    load_yaml_config,
    to_dict,
)
from nmt.errors import UserError
from nmt.models.configs import ModelConfig
from nmt.models.registry import ARCHITECTURES, model_config, train_config

CONFIGS = [TrainConfig, DecodeConfig, PrepareConfig, EvalConfig, ModelConfig] + [
    architecture.config for architecture in ARCHITECTURES.values()
]
FIELDS = [
    (cls, field.name, typing.get_type_hints(cls)[field.name]) for cls in CONFIGS for field in fields(cls)
]
FIELD_IDS = [f"{cls.__name__}.{name}" for cls, name, _ in FIELDS]


def unwrap(hint) -> tuple[object, bool]:
    """(T, optional) of a field type `T` or `T | None`."""
    args = typing.get_args(hint)
    if type(None) in args:
        (inner,) = (arg for arg in args if arg is not type(None))
        return inner, True
    return hint, False


def other_value(hint, default):
    """A valid value of type `hint` that differs from `default`."""
    hint, _ = unwrap(hint)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return next(member for member in hint if member != default)
    if typing.get_origin(hint) is tuple:
        args = typing.get_args(hint)
        if args[-1] is Ellipsis:
            return {int: (0, 5, 7), float: (0.5, 1.5), str: ("a=b", "c=d")}[args[0]]
        return tuple(other_value(arg, None) for arg in args)
    if hint is bool:
        return not default
    if hint is int:
        return (default or 0) + 3
    if hint is float:
        return (default or 0.0) + 0.25
    if hint is str:
        return f"{default or 'value'}-x"
    if hint is Path:
        return Path("some/where")
    raise AssertionError(f"no sample value for {hint}")


def changed(cls):
    """An instance of `cls` with every field set to a value other than its default."""
    defaults = cls()
    hints = typing.get_type_hints(cls)
    return cls(**{f.name: other_value(hints[f.name], getattr(defaults, f.name)) for f in fields(cls)})


def message(cls, values) -> str:
    with pytest.raises(UserError) as caught:
        build(cls, values, "test config")
    text = str(caught.value)
    assert "\n" not in text
    return text


# ------------------------------------------------------------------------------------------------------------
# Properties over every field of every config dataclass


@pytest.mark.parametrize("cls", CONFIGS, ids=[cls.__name__ for cls in CONFIGS])
def test_every_field_round_trips_through_to_dict_and_from_dict(cls):
    for config in (cls(), changed(cls)):
        plain = to_dict(config)
        assert from_dict(cls, plain) == config
        # to_dict gives built-in types only: the same config comes back through YAML and JSON text.
        assert from_dict(cls, yaml.safe_load(yaml.safe_dump(plain))) == config
        assert from_dict(cls, json.loads(json.dumps(plain))) == config
        assert to_dict(from_dict(cls, plain)) == plain


def test_a_saved_config_with_a_boolean_written_as_0_or_1_still_loads():
    """Older checkpoints saved YAML values unchecked: `bf16: 1` is read as true there, and only there."""
    assert from_dict(TrainConfig, {"bf16": 1, "compile": 0}) == TrainConfig(bf16=True, compile=False)
    with pytest.raises(UserError, match="must be true or false"):
        from_dict(TrainConfig, {"bf16": 2})
    with pytest.raises(UserError, match="must be true or false"):
        build(TrainConfig, {"bf16": 1}, "training config")  # what a user writes is checked strictly


@pytest.mark.parametrize("cls, name, hint", FIELDS, ids=FIELD_IDS)
def test_every_field_type_converts_its_own_values_unchanged(cls, name, hint):
    default = getattr(cls(), name)
    for value in (default, other_value(hint, default)):
        converted = convert(value, hint, name)
        assert converted == value and type(converted) is type(value)


@pytest.mark.parametrize("cls, name, hint", FIELDS, ids=FIELD_IDS)
def test_yaml_scalars_given_as_text_convert_to_the_field_type(cls, name, hint):
    """What YAML leaves as text (`1e-3`, `"4096"`, `"true"`) and what a command line gives."""
    value = other_value(hint, getattr(cls(), name))
    if isinstance(value, enum.Enum):
        text = value.value
    elif isinstance(value, tuple):
        text = ", ".join(str(item) for item in value)
    elif isinstance(value, bool):
        text = str(value).lower()
    else:
        text = str(value)
    assert getattr(build(cls, {name: text}, "test config"), name) == value


@pytest.mark.parametrize("cls, name, hint", FIELDS, ids=FIELD_IDS)
def test_a_bad_value_is_one_line_naming_the_key_the_value_and_the_type(cls, name, hint):
    inner, optional = unwrap(hint)
    bad = ["not", "a", "scalar", "here"] if inner in (str, Path) else "lots"
    if typing.get_args(inner) == (str, Ellipsis):  # any text is a list of strings: numbers are not
        bad = [1, 2]
    text = message(cls, {name: bad})
    assert f"test config key '{name}'" in text and repr(bad) in text
    expected = {
        int: "an integer",
        float: "a finite number",
        bool: "true or false",
        str: "a string",
        Path: "a path",
    }
    if inner in expected:
        assert f"must be {expected[inner]}" in text
    elif isinstance(inner, type) and issubclass(inner, enum.Enum):
        assert all(str(member.value) in text for member in inner)
    else:
        assert "a list of" in text
    assert ("or null" in text) == optional


@pytest.mark.parametrize("cls, name, hint", FIELDS, ids=FIELD_IDS)
def test_null_is_accepted_exactly_by_the_optional_fields(cls, name, hint):
    _, optional = unwrap(hint)
    if optional:
        assert getattr(build(cls, {name: None}, "test config"), name) is None
    else:
        assert "got None" in message(cls, {name: None})


def test_bools_are_not_numbers_and_numbers_are_not_bools():
    numbers = [(cls, name) for cls, name, hint in FIELDS if unwrap(hint)[0] in (int, float)]
    switches = [(cls, name) for cls, name, hint in FIELDS if unwrap(hint)[0] is bool]
    assert numbers and switches
    for cls, name in numbers:
        assert "got True" in message(cls, {name: True})
    for cls, name in switches:
        for value in (1, 0, "1", 1.0):
            assert "must be true or false" in message(cls, {name: value})
        for text, value in (("yes", True), ("No", False), ("on", True), ("off", False), ("TRUE", True)):
            assert getattr(build(cls, {name: text}, "test config"), name) is value


# ------------------------------------------------------------------------------------------------------------
# Each kind of value


def test_the_yaml_1e_minus_3_problem():
    """YAML 1.1 reads `1e-3` (no dot) as text: the day-one bug of `nmt train --config`."""
    values = yaml.safe_load("lr: 1e-3\nbatch_tokens: '4096'\nwarmup_steps: 4_000\nmin_lr: 1.0e-7\n")
    assert values["lr"] == "1e-3"
    config = build(TrainConfig, values, "training config")
    assert (config.lr, config.batch_tokens, config.warmup_steps, config.min_lr) == (1e-3, 4096, 4000, 1e-7)
    assert type(config.lr) is float and type(config.batch_tokens) is int


def test_integers_are_never_truncated():
    assert build(TrainConfig, {"batch_tokens": 4096.0}, "c").batch_tokens == 4096
    assert build(TrainConfig, {"batch_tokens": "4e3"}, "c").batch_tokens == 4000
    for value in (2.5, "2.5", float("inf"), "nan", "0x10", ""):
        assert "must be an integer" in message(TrainConfig, {"batch_tokens": value})


def test_floats_must_be_finite():
    lr = build(TrainConfig, {"lr": 1}, "c").lr
    assert lr == 1.0 and type(lr) is float
    for value in ("nan", "inf", float("-inf"), ".inf", 10**400, "fast"):
        assert "must be a finite number" in message(TrainConfig, {"lr": value})


def test_tuples_take_lists_or_comma_separated_text_of_the_right_length():
    assert build(TrainConfig, {"betas": [0.9, "0.99"]}, "c").betas == (0.9, 0.99)
    assert build(TrainConfig, {"betas": "0.8,0.9"}, "c").betas == (0.8, 0.9)
    assert build(EvalConfig, {"bucket_edges": [0, 5, "15"]}, "c").bucket_edges == (0, 5, 15)
    assert "a list of 2 numbers" in message(TrainConfig, {"betas": [0.9]})
    assert "a list of 2 numbers" in message(TrainConfig, {"betas": [0.9, 0.98, 0.99]})
    assert "a list of 2 numbers" in message(TrainConfig, {"betas": 0.9})
    assert "a list of integers" in message(EvalConfig, {"bucket_edges": [0, 1.5]})


def test_enums_take_their_values_and_list_them_when_wrong():
    assert build(TrainConfig, {"schedule": "plateau"}, "c").schedule is Schedule.plateau
    assert build(TrainConfig, {"schedule": Schedule.constant}, "c").schedule is Schedule.constant
    text = message(TrainConfig, {"schedule": "linear"})
    assert "must be one of inverse-sqrt, plateau, constant (got 'linear')" in text


def test_text_fields_refuse_what_yaml_turned_into_something_else():
    """YAML 1.1 reads `source_lang: no` (Norwegian) as False and `dataset_revision: 1.10` as 1.1."""
    for value in (False, 1.1, 7):
        text = message(PrepareConfig, {"source_lang": value})
        assert "must be a string or null" in text and "quote it in YAML" in text
    assert build(PrepareConfig, {"source_lang": "no"}, "c").source_lang == "no"


def test_paths_take_text_and_refuse_empty_text():
    assert build(PrepareConfig, {"train_prefix": "raw/train"}, "c").train_prefix == Path("raw/train")
    assert "must be a path or null" in message(PrepareConfig, {"train_prefix": ""})


def test_unknown_keys_name_the_closest_valid_one():
    text = message(TrainConfig, {"warmup_step": 10})
    assert text == "unknown test config key 'warmup_step' (did you mean 'warmup_steps'?)"


def test_a_field_type_without_a_conversion_is_a_programming_error_not_a_user_error():
    @dataclass
    class Odd:
        either: int | str = 0
        mapping: dict = dataclasses.field(default_factory=dict)

    with pytest.raises(NotImplementedError):
        build(Odd, {"either": 1}, "odd")
    with pytest.raises(NotImplementedError):
        build(Odd, {"mapping": {}}, "odd")


# ------------------------------------------------------------------------------------------------------------
# Where configs are built: YAML files, the registry (presets and command-line options)


def test_yaml_config_values_are_converted_and_errors_name_the_file(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("model:\n  hidden_dim: '48'\ntrain:\n  lr: 1e-3\n  schedule: constant\n  bf16: no\n")
    model, train = load_yaml_config(good, ARCHITECTURES["rnn"].config)
    assert model == {"hidden_dim": 48}
    assert train == {"lr": 1e-3, "schedule": Schedule.constant, "bf16": False}

    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  batch_tokens: lots\n")
    with pytest.raises(UserError) as caught:
        load_yaml_config(bad)
    assert str(caught.value) == (f"{bad}: training config key 'batch_tokens' must be an integer (got 'lots')")
    for text, fragment in (("train: 5\n", "'train:' must be a mapping"), ("- 1\n", "must be a mapping")):
        bad.write_text(text)
        with pytest.raises(UserError, match=fragment):
            load_yaml_config(bad)


def test_presets_and_command_line_values_go_through_the_same_conversion():
    """cli/train.py passes the options it was given as overrides; the registry builds every config."""
    config = train_config("rnn", "tiny", {"lr": "1e-3", "batch_tokens": "4096", "betas": ["0.9", "0.99"]})
    assert (config.lr, config.batch_tokens, config.betas) == (1e-3, 4096, (0.9, 0.99))
    assert config.schedule is Schedule.plateau  # the preset's enum member, converted like any value
    assert model_config("transformer", "tiny", {"num_heads": "2"}).num_heads == 2
    with pytest.raises(
        UserError, match=r"training config key 'batch_tokens' must be an integer \(got 'lots'\)"
    ):
        train_config("rnn", "tiny", {"batch_tokens": "lots"})
    with pytest.raises(UserError, match="model config key 'tie_output' must be true or false"):
        model_config("transformer", "tiny", {"tie_output": 1})


def test_nmt_train_with_yaml_text_values_trains_and_options_override_the_file(toy_data, tmp_path, one_thread):
    config = tmp_path / "run.yaml"
    config.write_text("train:\n  lr: 1e-3\n  batch_tokens: '600'\n  min_lr: 1e-7\n")
    run = tmp_path / "run"
    result = run_nmt(
        "train", "--data", toy_data, "--model", "rnn", "--preset", "tiny", "--config", config,
        "--max-steps", "2", "--dev-sentences", "2", "--device", "cpu", "--out", run,
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    saved = yaml.safe_load((run / "config.yaml").read_text())["train"]
    assert (saved["lr"], saved["batch_tokens"], saved["min_lr"], saved["max_steps"]) == (1e-3, 600, 1e-7, 2)
    assert (run / "last.pt").is_file()

    result = run_nmt(
        "train", "--data", toy_data, "--model", "rnn", "--preset", "tiny", "--config", config,
        "--lr", "0.002", "--max-steps", "1", "--dev-sentences", "2", "--device", "cpu",
        "--out", tmp_path / "r2",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert yaml.safe_load((tmp_path / "r2" / "config.yaml").read_text())["train"]["lr"] == 0.002
