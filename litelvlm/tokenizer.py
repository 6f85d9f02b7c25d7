"""The GLaMM release's token ids, whatever transformers version is installed.

The released GLaMM / LiteLVLM code tokenizes with the slow sentencepiece ``LlamaTokenizer`` of its pinned
transformers (4.28.0.dev0, commit cae78c46; 4.31 behaves the same for these checkpoints). That tokenizer

1. splits the text at its "no split" tokens: the added tokens of ``added_tokens.json`` (``<im_start>``,
   ``[SEG]``, ...) and the special tokens ``<s>``, ``</s>``, ``<unk>``, leftmost and longest first;
2. strips the whitespace next to each of them: on BOTH sides for an added token and for a special token
   given as a plain string, on the sides its ``AddedToken`` flags (``lstrip`` / ``rstrip``) name for a
   special token given as a dict;
3. encodes every remaining piece on its own with the checkpoint's sentencepiece model. ``legacy`` (true or
   absent, the only behaviour of 4.28) lets sentencepiece put its ``▁`` prefix on every piece; non-legacy
   (``"legacy": false`` in ``tokenizer_config.json``, read by 4.31) prefixes ``▁`` to the whole text once and
   removes the ``▁`` that sentencepiece adds to a piece following a no-split token (4.31's rule, which can
   leave a piece outside the vocabulary: it becomes ``<unk>``);
4. maps pieces to ids (added tokens first) and puts BOS first (``add_bos_token``, default true).

transformers 5 keeps the whitespace around added tokens, which inserts ``▁`` pieces before ``<im_start>``
and every ``[SEG]``; ``ReleasedLlamaTokenizer`` restates the released rules with ``sentencepiece`` alone.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

__all__ = ["SPIECE_UNDERLINE", "NoSplitToken", "Encoding", "ReleasedLlamaTokenizer", "SPECIAL_TOKEN_NAMES"]

SPIECE_UNDERLINE = "\u2581"
SPECIAL_TOKEN_NAMES = ("bos_token", "eos_token", "unk_token", "pad_token")
_DEFAULT_SPECIALS = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}


@dataclass(frozen=True)
class NoSplitToken:
    """A token the text is split at, and the whitespace it eats on its left / right.

    ``flagged``: the token is an ``AddedToken`` whose own flags apply (a special token given as a dict);
    otherwise the released default, stripping both sides, applies."""

    content: str
    lstrip: bool = True
    rstrip: bool = True
    flagged: bool = False


@dataclass(frozen=True)
class Encoding:
    """What ``tokenizer(text)`` returns, as transformers does: ``.input_ids``."""

    input_ids: list[int]


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err.msg} at line {err.lineno}); re-download the tokenizer files") from None


def _special_from_value(value) -> NoSplitToken | None:
    """A special token as the released tokenizer holds it: a dict is an ``AddedToken`` (its flags apply),
    a plain string strips both sides, None is unset."""
    if value is None:
        return None
    if isinstance(value, dict):
        if "content" not in value:
            raise ValueError(f"a special token dict needs 'content', got {value}")
        return NoSplitToken(str(value["content"]), bool(value.get("lstrip", False)), bool(value.get("rstrip", False)), True)
    return NoSplitToken(str(value))


class ReleasedLlamaTokenizer:
    """Token ids of the released slow ``LlamaTokenizer`` (see the module docstring for the rules).

    ``added_tokens`` maps each added token to its id (``added_tokens.json``); ``special_tokens`` maps
    ``bos_token`` / ``eos_token`` / ``unk_token`` / ``pad_token`` to a ``NoSplitToken`` (or None).
    """

    def __init__(self, sp_model_file: str | Path, added_tokens: dict[str, int], special_tokens: dict[str, NoSplitToken | None],
                 *, legacy: bool = True, add_bos_token: bool = True, add_eos_token: bool = False,
                 sp_model_kwargs: dict | None = None):
        import sentencepiece as spm

        self.sp_model = spm.SentencePieceProcessor(**(sp_model_kwargs or {}))
        self.sp_model.Load(str(sp_model_file))
        self.legacy = bool(legacy)
        self.add_bos_token = bool(add_bos_token)
        self.add_eos_token = bool(add_eos_token)
        self.added_tokens = {str(k): int(v) for k, v in added_tokens.items()}
        self.special_tokens = {k: v for k, v in special_tokens.items() if v is not None}
        self._check_added_ids()
        flags = {t: NoSplitToken(t) for t in self.added_tokens}
        for token in self.special_tokens.values():  # released: an AddedToken's own flags win over a plain string
            if token.flagged or not flags.get(token.content, token).flagged:
                flags[token.content] = token
        self.no_split = flags
        alternatives = sorted(flags, key=len, reverse=True)  # leftmost match, longest first
        self._splitter = re.compile("(" + "|".join(map(re.escape, alternatives)) + ")") if alternatives else None

    def _check_added_ids(self) -> None:
        base = self.sp_model.GetPieceSize()
        expected = list(range(base, base + len(self.added_tokens)))
        if sorted(self.added_tokens.values()) != expected:
            raise ValueError(
                f"added token ids {sorted(self.added_tokens.values())} do not continue the sentencepiece vocabulary of "
                f"{base} pieces (expected {expected}): added_tokens.json does not belong to this tokenizer.model"
            )

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(cls, folder: str | Path, legacy: bool | None = None) -> "ReleasedLlamaTokenizer":
        """Read ``tokenizer.model`` and the 4.x tokenizer files of a LLaVA / GLaMM checkpoint folder.

        ``legacy=None`` follows the folder's ``legacy`` key as transformers 4.31 does (absent or true: legacy);
        ``legacy=True`` tokenizes as the release's pinned 4.28.0.dev0, which has no such key and is always
        legacy. The real GLaMM checkpoints have no key, so both give the same ids there."""
        root = Path(folder)
        model_file = root / "tokenizer.model"
        if not model_file.is_file():
            raise FileNotFoundError(f"{root} has no tokenizer.model (the sentencepiece model GLaMM ships): wrong checkpoint folder?")
        config_file = root / "tokenizer_config.json"
        config = _read_json(config_file) if config_file.is_file() else {}
        specials = cls._special_tokens(root, config)
        added = cls._added_tokens(root, config, specials)
        return cls(
            model_file, added, specials, legacy=bool(config.get("legacy", True)) if legacy is None else legacy,
            add_bos_token=config.get("add_bos_token", True), add_eos_token=config.get("add_eos_token", False),
            sp_model_kwargs=config.get("sp_model_kwargs") or {},
        )

    @staticmethod
    def _special_tokens(root: Path, config: dict) -> dict[str, NoSplitToken | None]:
        """bos/eos/unk/pad as the released loader ends up holding them: the tokenizer's defaults, then
        ``tokenizer_config.json`` (``{"__type": "AddedToken"}`` dicts, or strings the Llama tokenizer wraps as
        non-stripping ``AddedToken``), then ``special_tokens_map.json`` set on top (a string stays a string)."""
        specials: dict[str, NoSplitToken | None] = {k: NoSplitToken(v, False, False, True) for k, v in _DEFAULT_SPECIALS.items()}
        for name in SPECIAL_TOKEN_NAMES:
            if name in config:
                value = config[name]
                specials[name] = NoSplitToken(value, False, False, True) if isinstance(value, str) else _special_from_value(value)
        map_file = root / "special_tokens_map.json"
        if map_file.is_file():
            for name, value in _read_json(map_file).items():
                if name in SPECIAL_TOKEN_NAMES and value:
                    specials[name] = _special_from_value(value)
        return specials

    @staticmethod
    def _added_tokens(root: Path, config: dict, specials: dict) -> dict[str, int]:
        """``added_tokens.json``; a folder written by transformers >= 4.34 has ``added_tokens_decoder`` instead
        (its entries beyond the sentencepiece vocabulary, special tokens excluded)."""
        added_file = root / "added_tokens.json"
        if added_file.is_file():
            return {str(k): int(v) for k, v in _read_json(added_file).items()}
        special_names = {t.content for t in specials.values() if t is not None}
        decoder = config.get("added_tokens_decoder") or {}
        return {entry["content"]: int(i) for i, entry in decoder.items() if entry["content"] not in special_names}

    # ------------------------------------------------------------------ ids
    @property
    def bos_token_id(self) -> int | None:
        return self._special_id("bos_token")

    @property
    def eos_token_id(self) -> int | None:
        return self._special_id("eos_token")

    @property
    def unk_token_id(self) -> int | None:
        return self._special_id("unk_token")

    @property
    def pad_token_id(self) -> int | None:
        return self._special_id("pad_token")

    def _special_id(self, name: str) -> int | None:
        token = self.special_tokens.get(name)
        return None if token is None else self.convert_tokens_to_ids(token.content)

    def __len__(self) -> int:
        return self.sp_model.GetPieceSize() + len(self.added_tokens)

    def convert_tokens_to_ids(self, tokens: str | Sequence[str]):
        """Added tokens first, then sentencepiece pieces (an unknown piece is ``<unk>``'s id)."""
        if isinstance(tokens, str):
            return self.added_tokens[tokens] if tokens in self.added_tokens else self.sp_model.piece_to_id(tokens)
        return [self.convert_tokens_to_ids(t) for t in tokens]

    # ------------------------------------------------------------------ tokenization
    def _split(self, text: str) -> list[str]:
        """The text cut at no-split tokens, whitespace stripped next to them, empty pieces dropped."""
        parts = self._splitter.split(text) if self._splitter else [text]
        for i, part in enumerate(parts):
            token = self.no_split.get(part) if i % 2 else None  # odd positions hold the matched tokens
            if token is None:
                continue
            if token.rstrip and i + 1 < len(parts) and parts[i + 1]:
                parts[i + 1] = parts[i + 1].lstrip()
            if token.lstrip and i > 0 and parts[i - 1]:
                parts[i - 1] = parts[i - 1].rstrip()
        return [p for p in parts if p]

    def _encode_piece(self, text: str) -> list[str]:
        """One piece through sentencepiece, with the released ``legacy`` handling of the ``▁`` prefix."""
        if self.legacy:
            return self.sp_model.encode(text, out_type=str)
        is_first = text.startswith(SPIECE_UNDERLINE)
        if is_first:
            text = text[1:]
        pieces = self.sp_model.encode(text, out_type=str)
        if not is_first and not text.startswith(" ") and pieces and pieces[0].startswith(SPIECE_UNDERLINE):
            pieces = ([pieces[0][1:]] if len(pieces[0]) > 1 else []) + pieces[1:]
        return pieces

    def tokenize(self, text: str) -> list[str]:
        """Token strings of ``text`` (no BOS)."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        if not self.legacy:
            text = SPIECE_UNDERLINE + text.replace(SPIECE_UNDERLINE, " ")
        tokens: list[str] = []
        for part in self._split(text):
            tokens.extend([part] if part in self.no_split else self._encode_piece(part))
        return tokens

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """Ids of ``text``; with ``add_special_tokens`` BOS first (and EOS last when ``add_eos_token``)."""
        ids = self.convert_tokens_to_ids(self.tokenize(text))
        if add_special_tokens:
            ids = ([self.bos_token_id] if self.add_bos_token else []) + ids + ([self.eos_token_id] if self.add_eos_token else [])
        return ids

    def __call__(self, text: str, add_special_tokens: bool = True) -> Encoding:
        return Encoding(self.encode(text, add_special_tokens))

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids``: added tokens verbatim, the runs between them through sentencepiece."""
        by_id = {i: t for t, i in self.added_tokens.items()}
        out, run = [], []
        for i in ids:
            if int(i) in by_id:
                out.append(self.sp_model.decode(run))
                out.append(by_id[int(i)])
                run = []
            else:
                run.append(int(i))
        out.append(self.sp_model.decode(run))
        return "".join(out)
