"""Recipes (data/recipes/*.yaml) and `nmt prepare --recipe`: every recipe is a valid PrepareConfig, each runs
offline (the network ones on a local stand-in of the hub dataset's layout), options override a recipe."""

from __future__ import annotations

import gzip
import re
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import corpus_path, run_nmt, snapshot, toy_pairs

from nmt.config import SYNTHETIC_DATASET, PrepareConfig, SubwordModel, from_dict, to_dict
from nmt.data.prepared import PreparedData
from nmt.data.recipes import PATH_KEYS, load_recipe, recipe_config
from nmt.errors import UserError

ROOT = Path(__file__).resolve().parent.parent
RECIPES = ROOT / "data" / "recipes"
RECIPE_FILES = sorted(RECIPES.glob("*.yaml"))
STANDARD = {"wmt14-en-fr", "iwslt14-de-en", "multi30k-en-de", "europarl-it-en", "synthetic"}
NETWORK = ["wmt14-en-fr", "iwslt14-de-en"]
# What every recipe states explicitly, besides its source and languages.
SETTINGS = {"max_tokens", "max_length_ratio", "vocab_size", "joint_vocabulary", "model_type"}


@pytest.fixture(autouse=True)
def _private_datasets_cache(tmp_path, monkeypatch):
    """Keep the Arrow caches that `datasets.load_dataset` writes for local files inside tmp_path."""
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")


def prepare(*args) -> tuple[int, str]:
    result = run_nmt("prepare", *args)
    return result.exit_code, result.stdout + result.stderr


# ------------------------------------------------------------------------------------------------------------
# Every recipe


def test_there_is_a_recipe_for_every_standard_corpus():
    assert {path.stem for path in RECIPE_FILES} >= STANDARD


@pytest.mark.parametrize("path", RECIPE_FILES, ids=[p.stem for p in RECIPE_FILES])
def test_every_recipe_parses_into_a_valid_prepare_config(path):
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert set(raw) >= SETTINGS, f"{path.name} leaves {SETTINGS - set(raw)} to the defaults"
    config = recipe_config(path)
    assert isinstance(config, PrepareConfig) and from_dict(PrepareConfig, to_dict(config)) == config
    assert (config.train_prefix is None) != (config.dataset is None)  # one source: files or a dataset
    assert config.source_lang and config.target_lang and config.source_lang != config.target_lang
    assert config.vocab_size >= 8 and config.max_tokens >= 1 and config.max_length_ratio >= 1
    assert 0 < config.character_coverage <= 1
    for key in PATH_KEYS:  # relative to the recipe's folder, so absolute once loaded
        value = getattr(config, key)
        assert value is None or value.is_absolute()
    stem = f"{config.source_lang}-{config.target_lang}"
    assert config.dataset == SYNTHETIC_DATASET or path.stem.endswith(stem), f"{path.name} is not {stem}"


def test_recipes_agree_with_the_makefile_and_the_readmes():
    """`make demo` prepares its corpus from the synthetic recipe, the Europarl recipe uses the settings of
    `make reproduce`, and data/README.md describes every recipe."""
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")

    def variable(name: str) -> str:
        return re.search(rf"^{name} \?= (\S+)", makefile, flags=re.MULTILINE).group(1)

    europarl = recipe_config(RECIPES / "europarl-it-en.yaml")
    assert europarl.vocab_size == int(variable("REPRO_VOCAB"))
    assert (europarl.source_lang, europarl.target_lang) == (variable("REPRO_SRC"), variable("REPRO_TGT"))
    synthetic = recipe_config(RECIPES / "synthetic.yaml")
    assert synthetic.synthetic_size == int(variable("DEMO_PAIRS"))
    assert "prepare --recipe data/recipes/synthetic.yaml --synthetic-size $(DEMO_PAIRS)" in makefile
    assert (synthetic.model_type, synthetic.vocab_size) == (SubwordModel.bpe, 1000)
    assert recipe_config(RECIPES / "multi30k-en-de.yaml").vocab_size == 8000  # README's quickstart
    readme = (ROOT / "data" / "README.md").read_text(encoding="utf-8")
    for path in RECIPE_FILES:
        assert f"recipes/{path.name}" in readme


@pytest.mark.corpora
@pytest.mark.parametrize("name", ["multi30k-en-de", "europarl-it-en"])
def test_local_recipes_point_at_the_shared_corpora(name):
    corpus_path()  # skips when ../shared/corpora is absent
    config = recipe_config(RECIPES / f"{name}.yaml")
    for key in PATH_KEYS:
        for lang in (config.source_lang, config.target_lang):
            assert Path(f"{getattr(config, key)}.{lang}.gz").is_file()


# ------------------------------------------------------------------------------------------------------------
# Running recipes offline


def write_gz(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress("".join(line + "\n" for line in lines).encode("utf-8")))


def test_multi30k_recipe_on_a_standin_of_the_same_layout(tmp_path, monkeypatch):
    """The unchanged recipe, copied to <tmp>/project/data/recipes/, reads <tmp>/shared/corpora/multi30k/:
    its relative paths are relative to the recipe, whatever the working directory."""
    recipe = tmp_path / "project" / "data" / "recipes" / "multi30k-en-de.yaml"
    recipe.parent.mkdir(parents=True)
    shutil.copy(RECIPES / recipe.name, recipe)
    corpus = tmp_path / "shared" / "corpora" / "multi30k"
    for split, n, seed in (("train", 200, 1), ("val", 15, 2), ("test2016", 12, 3)):
        pairs = toy_pairs(n, seed)
        write_gz(corpus / f"{split}.en.gz", [s for s, _ in pairs])
        write_gz(corpus / f"{split}.de.gz", [t for _, t in pairs])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)

    code, output = prepare("--recipe", recipe, "--vocab-size", "48", "--out", tmp_path / "out")
    assert code == 0, output
    data = PreparedData.open(tmp_path / "out")
    manifest = data.manifest
    assert (data.source_lang, data.target_lang) == ("en", "de")
    assert manifest["sources"]["dev"]["source"] == str((corpus / "val.en.gz").resolve())
    assert data.text("test", "target") == [t for _, t in toy_pairs(12, 3)]
    assert manifest["counts"]["train"]["read"] == 200
    assert manifest["config"]["vocab_size"] == 48  # the option given beside the recipe
    recipe_values = yaml.safe_load(recipe.read_text())
    for key in SETTINGS - {"vocab_size"}:  # the recipe's values, not the options' defaults
        assert manifest["config"][key] == recipe_values[key]


def test_synthetic_recipe_equals_its_options(tmp_path):
    """Preparing with the recipe gives what the same settings as options give (`make demo`'s command)."""
    small = ("--synthetic-size", "400", "--dev-size", "20", "--test-size", "20", "--vocab-size", "200")
    code, output = prepare("--recipe", RECIPES / "synthetic.yaml", *small, "--out", tmp_path / "recipe")
    assert code == 0, output
    code, output = prepare(
        "--dataset",
        "synthetic",
        "-s",
        "ul",
        "-t",
        "zk",
        "--model-type",
        "bpe",
        *small,
        "--out",
        tmp_path / "flags",
    )
    assert code == 0, output
    by_recipe, by_flags = (PreparedData.open(tmp_path / name) for name in ("recipe", "flags"))
    assert by_recipe.manifest["config"] == by_flags.manifest["config"]
    assert by_recipe.manifest["config"]["synthetic_size"] == 400
    assert (tmp_path / "recipe" / "spm.model").read_bytes() == (tmp_path / "flags" / "spm.model").read_bytes()
    assert by_recipe.text("test", "source") == by_flags.text("test", "source")


def hub_standin(root: Path, config: str | None, languages: tuple[str, str], with_id: bool) -> Path:
    """A local copy of a hub dataset repository's layout: Parquet files per split under the config's folder
    (or data/), with the README's `configs:` metadata that the hub reads, and a 'translation' column."""
    import datasets

    folder = config or "data"
    for split, n, seed in (("train", 120, 1), ("validation", 10, 2), ("test", 8, 3)):
        rows = {"translation": [dict(zip(languages, pair, strict=True)) for pair in toy_pairs(n, seed)]}
        if with_id:
            rows["id"] = [str(i) for i in range(n)]
        table = datasets.Dataset.from_dict(rows)
        (root / folder).mkdir(parents=True, exist_ok=True)
        table.to_parquet(str(root / folder / f"{split}-00000-of-00001.parquet"))
    if config is not None:
        splits = "".join(
            f"  - split: {split}\n    path: {config}/{split}-*\n" for split in ("train", "validation", "test")
        )
        (root / "README.md").write_text(
            f"---\nconfigs:\n- config_name: {config}\n  data_files:\n{splits}---\n"
        )
    return root


@pytest.mark.parametrize("name", NETWORK)
def test_network_recipes_on_a_local_standin_of_the_hub_dataset(name, tmp_path, monkeypatch):
    """The hub code path with the recipe's own id and config, offline: `load_dataset` reads a local copy of
    the repository's layout instead of downloading it."""
    import datasets

    recipe = recipe_config(RECIPES / f"{name}.yaml")
    languages = (recipe.source_lang, recipe.target_lang)
    standin = hub_standin(
        tmp_path / "hub", recipe.dataset_config, languages, with_id=name.startswith("iwslt")
    )
    real_load_dataset = datasets.load_dataset
    calls = []

    def load_dataset(path, name=None, **kwargs):
        calls.append((path, name, kwargs.get("revision")))
        return real_load_dataset(str(standin), name)

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    out = tmp_path / "out"
    code, output = prepare("--recipe", RECIPES / f"{name}.yaml", "--vocab-size", "48", "--out", out)
    assert code == 0, output
    assert calls == [(recipe.dataset, recipe.dataset_config, None)]
    data = PreparedData.open(out)
    assert (data.source_lang, data.target_lang) == (recipe.source_lang, recipe.target_lang)
    sources = data.manifest["sources"]
    assert [sources[split]["split"] for split in ("train", "dev", "test")] == ["train", "validation", "test"]
    assert sources["train"]["id"] == recipe.dataset and sources["train"]["config"] == recipe.dataset_config
    assert data.text("test", "source") == [s for s, _ in toy_pairs(8, 3)]


def test_a_hub_recipe_runs_on_a_dataset_directory_given_beside_it(tmp_path):
    """`--dataset DIR` (a save_to_disk directory) replaces the recipe's hub id; the rest of it stays."""
    import datasets

    def split(n, seed):
        return datasets.Dataset.from_dict(
            {"translation": [{"de": s, "en": t} for s, t in toy_pairs(n, seed)]}
        )

    copy = tmp_path / "iwslt-copy"
    datasets.DatasetDict(
        {"train": split(120, 1), "validation": split(10, 2), "test": split(8, 3)}
    ).save_to_disk(str(copy))
    out = tmp_path / "out"
    recipe = RECIPES / "iwslt14-de-en.yaml"
    code, output = prepare("--recipe", recipe, "--dataset", copy, "--vocab-size", "48", "--out", out)
    assert code == 0, output
    manifest = PreparedData.open(out).manifest
    assert manifest["sources"]["train"]["kind"] == "dataset_directory"
    assert manifest["config"]["model_type"] == "bpe"  # from the recipe
    assert (manifest["source_lang"], manifest["target_lang"]) == ("de", "en")


# ------------------------------------------------------------------------------------------------------------
# Overrides and relative paths


def write_recipe(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_given_options_override_the_recipe_and_an_input_replaces_the_other_kind(tmp_path):
    languages = "source_lang: de\ntarget_lang: en\n"
    files = write_recipe(
        tmp_path / "r" / "files.yaml", languages + "train_prefix: raw/train\nvocab_size: 100\n"
    )
    hub = write_recipe(tmp_path / "r" / "hub.yaml", languages + "dataset: x/y\ndataset_config: de-en\n")
    assert recipe_config(files).train_prefix == tmp_path / "r" / "raw" / "train"
    assert recipe_config(files, {"vocab_size": 60}).vocab_size == 60
    assert recipe_config(files, {"seed": 3}).vocab_size == 100
    replaced = recipe_config(files, {"dataset": "local-dir"})
    assert (replaced.dataset, replaced.train_prefix) == ("local-dir", None)
    replaced = recipe_config(hub, {"train_prefix": Path("mine")})
    assert (replaced.train_prefix, replaced.dataset, replaced.dataset_config) == (Path("mine"), None, None)
    assert recipe_config(hub, {"dataset": "copy"}).dataset_config == "de-en"


def test_a_local_dataset_path_is_relative_to_the_recipe_and_a_hub_id_is_not(tmp_path):
    recipe = write_recipe(
        tmp_path / "r" / "a.yaml", "source_lang: de\ntarget_lang: en\ndataset: ./pairs.jsonl\n"
    )
    assert load_recipe(recipe)["dataset"] == str(tmp_path / "r" / "pairs.jsonl")
    recipe.write_text("source_lang: de\ntarget_lang: en\ndataset: org/pairs\n")
    assert load_recipe(recipe)["dataset"] == "org/pairs"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("vocab: 100\n", "unknown recipe key 'vocab' (did you mean 'vocab_size'?)"),
        ("vocab_size: lots\n", "recipe key 'vocab_size' must be an integer (got 'lots')"),
        (
            "source_lang: no\n",
            "recipe key 'source_lang' must be a string or null (got False; quote it in YAML)",
        ),
        ("model_type: wordpiece\n", "recipe key 'model_type' must be one of unigram, bpe (got 'wordpiece')"),
        ("- vocab_size: 100\n", "must be a mapping of 'nmt prepare' settings"),
        ("", "must be a mapping of 'nmt prepare' settings"),
        ("vocab_size: [8000\n", "is not valid YAML"),
    ],
)
def test_a_bad_recipe_is_one_line_that_names_the_file(tmp_path, text, expected):
    recipe = write_recipe(tmp_path / "bad.yaml", text)
    with pytest.raises(UserError) as caught:
        recipe_config(recipe)
    assert expected in str(caught.value) and str(recipe) in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_bad_recipe_exits_2_and_writes_nothing(tmp_path):
    recipe = write_recipe(tmp_path / "bad.yaml", "dataset: synthetic\nvocab_size: lots\n")
    before = snapshot(tmp_path)
    code, output = prepare("--recipe", recipe, "--out", tmp_path / "out")
    assert code == 2 and output.strip().splitlines() == [
        f"error: {recipe}: recipe key 'vocab_size' must be an integer (got 'lots')"
    ]
    assert snapshot(tmp_path) == before
    code, output = prepare("--recipe", tmp_path / "none.yaml", "--out", tmp_path / "out")
    assert code == 2 and "recipe not found" in output and snapshot(tmp_path) == before
