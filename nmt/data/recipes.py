"""Recipes: how to prepare a standard corpus, as a small YAML file (data/recipes/*.yaml).

A recipe is a flat mapping of `PrepareConfig` keys: where the corpus comes from (a hub id and config, local
file prefixes, or the synthetic pair), its languages, and the cleaning and vocabulary settings. `nmt prepare
--recipe FILE` starts from it, and the options given beside it override its values.

Relative paths in a recipe (`train_prefix`, `dev_prefix`, `test_prefix`, and a `dataset` that starts with
./ or ../) are relative to the recipe file's folder, not to the working directory: a recipe means the same
wherever it is run from. A `dataset` without ./ or ../ is a hub id (or `synthetic`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from nmt.config import PrepareConfig, build, convert_values
from nmt.errors import UserError

PATH_KEYS = ("train_prefix", "dev_prefix", "test_prefix")
# The keys that name one kind of input; an input of the other kind given beside a recipe replaces them.
DATASET_KEYS = ("dataset", "dataset_config", "dataset_revision")


def load_recipe(path: Path) -> dict[str, Any]:
    """The values of the recipe at `path`, checked and converted to `PrepareConfig`'s types, with relative
    paths resolved against the recipe's folder. A bad recipe is a `UserError` that names the file."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"recipe not found: {path}" if not path.exists() else f"recipe {path} is not a file")
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise UserError(f"recipe {path} is not valid YAML: {str(error).splitlines()[0]}") from None
    except UnicodeDecodeError as error:
        raise UserError(f"recipe {path} is not valid UTF-8 (byte {error.start})") from None
    if not isinstance(values, dict) or not values:
        raise UserError(
            f"recipe {path} must be a mapping of 'nmt prepare' settings, such as 'source_lang: de' "
            "(see data/README.md)"
        )
    try:
        values = convert_values(PrepareConfig, values, "recipe")
    except UserError as error:
        raise UserError(f"{path}: {error}") from None
    return _resolved(values, path.parent)


def recipe_config(path: Path, overrides: Mapping[str, Any] | None = None) -> PrepareConfig:
    """The `PrepareConfig` of the recipe at `path` with `overrides` (the options the user gave) applied.

    Giving an input of the other kind replaces the recipe's: `train_prefix` drops the recipe's dataset, and
    `dataset` drops its training files (a hub recipe can be run on a local copy of the dataset this way).
    """
    recipe = load_recipe(path)
    overrides = dict(overrides or {})
    if overrides.get("train_prefix") is not None:
        recipe = {key: value for key, value in recipe.items() if key not in DATASET_KEYS}
    if overrides.get("dataset") is not None:
        recipe.pop("train_prefix", None)
    return build(PrepareConfig, {**recipe, **overrides}, "prepare setting")


def _resolved(values: dict[str, Any], folder: Path) -> dict[str, Any]:
    """Relative paths made relative to `folder` (absolute, so that they do not depend on the working
    directory); `~` expanded."""
    out = dict(values)
    for key in PATH_KEYS:
        if out.get(key) is not None:
            out[key] = _under(folder, out[key])
    dataset = out.get("dataset")
    if isinstance(dataset, str) and (dataset.startswith(("./", "../", "~")) or dataset in (".", "..")):
        out["dataset"] = str(_under(folder, Path(dataset)))
    return out


def _under(folder: Path, path: Path) -> Path:
    path = path.expanduser()
    return path if path.is_absolute() else (folder / path).resolve()
