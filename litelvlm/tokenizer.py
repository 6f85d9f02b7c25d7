"""The released models' token ids, whatever transformers version is installed.

Both releases tokenize with the slow sentencepiece ``LlamaTokenizer`` of their own transformers, and both
differ from transformers 5. ``ReleasedLlamaTokenizer`` restates their rules with ``sentencepiece`` alone.

``rules="4.31"``: GLaMM / LiteLVLM (pinned transformers 4.28.0.dev0; 4.31 behaves the same on these
checkpoints). The tokenizer

1. splits the text at its "no split" tokens: the added tokens of ``added_tokens.json`` (``<im_start>``,
   ``[SEG]``, ...) and the special tokens ``<s>``, ``</s>``, ``<unk>``, leftmost and longest first;
2. strips the whitespace next to each of them: on BOTH sides for an added token and for a special token
   given as a plain string, on the sides its ``AddedToken`` flags (``lstrip`` / ``rstrip``) name for a
   special token given as a dict;
3. encodes every remaining piece on its own with the checkpoint's sentencepiece model. ``legacy`` (true or
   absent, the only behaviour of 4.28) lets sentencepiece put its ``▁`` prefix on every piece; non-legacy
   (``"legacy": false``, read by 4.31) prefixes ``▁`` to the whole text once and removes the ``▁`` that
   sentencepiece adds to a piece following a no-split token (which can leave a piece outside the
   vocabulary: it becomes ``<unk>``);
4. maps pieces to ids (added tokens first) and puts BOS first (``add_bos_token``, default true).

transformers 5 keeps the whitespace around added tokens, which inserts ``▁`` pieces before ``<im_start>``
and every ``[SEG]``.

``rules="4.41"``: VideoGLaMM (transformers 4.41, ``use_fast=False``, Phi-3's ``"legacy": false``). Every
added token (``added_tokens_decoder``, specials included) strips only the sides its own flags name; in
non-legacy mode sentencepiece runs without its dummy prefix, the text gets one ``▁`` in front
(``add_prefix_space``, default true) which is dropped only when a token of ``all_special_tokens`` follows,
and a piece starting with a space is encoded behind ``<unk>``, whose pieces are then removed. So a Phi-3
prompt starting with ``<|system|>`` (an added token, not in ``all_special_tokens``) keeps a leading ``▁``
(id 29871 in Phi-3's vocabulary), which transformers 5 does not produce.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from .jsonfile import read_json_object

__all__ = ["SPIECE_UNDERLINE", "RULES", "NoSplitToken", "Encoding", "ReleasedLlamaTokenizer", "SPECIAL_TOKEN_NAMES"]

SPIECE_UNDERLINE = "\u2581"
RULES = ("4.31", "4.41")
SPECIAL_TOKEN_NAMES = ("bos_token", "eos_token", "unk_token", "pad_token")
_DEFAULT_SPECIALS = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}


@dataclass(frozen=True)
class NoSplitToken:
    """A token the text is split at, and the whitespace it eats on its left / right.

    ``flagged``: the token is an ``AddedToken`` whose own flags apply (4.31: a special token given as a dict;
    4.41: every added token); otherwise 4.31's default, stripping both sides, applies."""

    content: str
    lstrip: bool = True
    rstrip: bool = True
    flagged: bool = False
    single_word: bool = False


@dataclass(frozen=True)
class Encoding:
    """What ``tokenizer(text)`` returns, as transformers does: ``.input_ids``."""

    input_ids: list[int]


def _read_json(path: Path) -> dict:
    return read_json_object(path, "tokenizer file")


def _token_id(value, where: Path) -> int:
    """A token id read from a tokenizer file: a non-negative integer (a string of digits, as JSON keys are, too)."""
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"tokenizer file {where}: token id {value!r} is not a non-negative integer; the file is corrupt: "
                         "re-download it")
    return value


@contextmanager
def _malformed_files(root: Path):
    """A tokenizer JSON file of the wrong shape (a list where an object belongs, an entry without ``content``) as one
    ``ValueError`` naming the folder's tokenizer files."""
    try:
        yield
    except (KeyError, TypeError, AttributeError) as err:
        raise ValueError(f"the tokenizer files in {root} (tokenizer_config.json, added_tokens.json, "
                         f"special_tokens_map.json) are malformed ({type(err).__name__}: {err}); re-download them") from None


def _token_from_value(value) -> NoSplitToken | None:
    """A special token as the released tokenizer holds it: a dict is an ``AddedToken`` (its flags apply),
    a plain string strips both sides (4.31), None is unset."""
    if value is None:
        return None
    if isinstance(value, dict):
        if "content" not in value:
            raise TypeError(f"a token dict needs 'content', got {value}")
        return NoSplitToken(str(value["content"]), bool(value.get("lstrip", False)), bool(value.get("rstrip", False)), True,
                            bool(value.get("single_word", False)))
    return NoSplitToken(str(value))


def _sentencepiece(model_file: Path, kwargs: dict, dummy_prefix: bool):
    """A SentencePieceProcessor; ``dummy_prefix=False`` turns off its ``▁`` prefix as transformers >= 4.34 does
    for non-legacy Llama tokenizers. A file sentencepiece cannot parse is one ``ValueError`` naming it."""
    import sentencepiece as spm

    try:
        processor = spm.SentencePieceProcessor(**kwargs)
    except (TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"tokenizer_config.json beside {model_file}: sp_model_kwargs {kwargs!r} are not sentencepiece "
                         f"options ({err}); re-download the tokenizer files") from None
    try:
        if dummy_prefix:
            processor.Load(str(model_file))
            return processor
        from sentencepiece import sentencepiece_model_pb2

        proto = sentencepiece_model_pb2.ModelProto()
        proto.ParseFromString(model_file.read_bytes())
        proto.normalizer_spec.add_dummy_prefix = False
        processor.LoadFromSerializedProto(proto.SerializeToString())
    except (MemoryError, PermissionError):
        raise
    except Exception as err:  # sentencepiece raises RuntimeError / OSError, protobuf its DecodeError
        reason = " ".join(str(err).split())[:200] or type(err).__name__
        raise ValueError(f"tokenizer file {model_file} is not a sentencepiece model ({reason}): the file is corrupt or "
                         "incomplete; re-download it") from None
    return processor


class ReleasedLlamaTokenizer:
    """Token ids of a released slow ``LlamaTokenizer`` (see the module docstring for the two rule sets).

    ``added_tokens`` maps added tokens to ids; ``special_tokens`` maps ``bos_token`` / ``eos_token`` /
    ``unk_token`` / ``pad_token`` to a ``NoSplitToken`` (or None); ``token_flags`` (4.41) holds each added
    token's own flags; ``all_special_tokens`` (4.41) the tokens whose leading ``▁`` is dropped.
    """

    def __init__(self, sp_model_file: str | Path, added_tokens: dict[str, int], special_tokens: dict[str, NoSplitToken | None],
                 *, rules: str = "4.31", legacy: bool = True, add_bos_token: bool = True, add_eos_token: bool = False,
                 add_prefix_space: bool = True, sp_model_kwargs: dict | None = None,
                 token_flags: dict[str, NoSplitToken] | None = None, all_special_tokens: Sequence[str] = ()):
        if rules not in RULES:
            raise ValueError(f"rules must be one of {RULES}, got {rules!r}")
        self.rules, self.legacy = rules, bool(legacy)
        self.add_bos_token, self.add_eos_token, self.add_prefix_space = bool(add_bos_token), bool(add_eos_token), bool(add_prefix_space)
        model_file = Path(sp_model_file)
        self.sp_model = _sentencepiece(model_file, sp_model_kwargs or {}, dummy_prefix=True)
        # 4.41 non-legacy encodes without sentencepiece's dummy prefix
        self._encoder = self.sp_model if (rules == "4.31" or self.legacy) else _sentencepiece(model_file, sp_model_kwargs or {}, False)
        self.added_tokens = {str(k): int(v) for k, v in added_tokens.items()}
        self.special_tokens = {k: v for k, v in special_tokens.items() if v is not None}
        self.all_special_tokens = set(all_special_tokens) | {t.content for t in self.special_tokens.values()}
        self._check_added_ids()
        self.no_split = self._flags_441(token_flags) if token_flags is not None else self._flags_431()
        alternatives = sorted(self.no_split, key=len, reverse=True)  # leftmost match, longest first
        self._splitter = re.compile("(" + "|".join(map(re.escape, alternatives)) + ")") if alternatives else None
        unk = self.special_tokens.get("unk_token")
        self._unk_pieces = len(self._encoder.encode(unk.content, out_type=str)) if unk else 0

    def _flags_431(self) -> dict[str, NoSplitToken]:
        flags = {t: NoSplitToken(t) for t in self.added_tokens}
        for token in self.special_tokens.values():  # released: an AddedToken's own flags win over a plain string
            if token.flagged or not flags.get(token.content, token).flagged:
                flags[token.content] = token
        return flags

    def _flags_441(self, token_flags: dict[str, NoSplitToken]) -> dict[str, NoSplitToken]:
        """4.41: the added tokens' own flags; special tokens missing there are added without stripping."""
        flags = dict(token_flags)
        for token in self.special_tokens.values():
            flags.setdefault(token.content, NoSplitToken(token.content, False, False, True))
        return flags

    def _check_added_ids(self) -> None:
        base = self.sp_model.GetPieceSize()
        beyond = sorted(i for i in self.added_tokens.values() if i >= base)
        if beyond != list(range(base, base + len(beyond))):
            raise ValueError(
                f"added token ids {beyond} do not continue the sentencepiece vocabulary of {base} pieces "
                f"(expected {list(range(base, base + len(beyond)))}): the added tokens do not belong to this tokenizer.model"
            )

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(cls, folder: str | Path, rules: str = "4.31", legacy: bool | None = None) -> "ReleasedLlamaTokenizer":
        """Read ``tokenizer.model`` and the 4.x tokenizer files of a checkpoint folder.

        ``rules``: ``4.31`` (GLaMM) or ``4.41`` (VideoGLaMM). ``legacy=None`` follows the folder's ``legacy`` key
        (absent or true: legacy); ``legacy=True`` tokenizes as GLaMM's pinned 4.28.0.dev0, which has no such key
        and is always legacy. The real GLaMM checkpoints have no key, so both give the same ids there."""
        if rules not in RULES:
            raise ValueError(f"rules must be one of {RULES}, got {rules!r}")
        root = Path(folder)
        model_file = root / "tokenizer.model"
        if not model_file.is_file():
            raise FileNotFoundError(f"{root} has no tokenizer.model (the sentencepiece model the checkpoint ships): wrong checkpoint folder?")
        config_file = root / "tokenizer_config.json"
        config = _read_json(config_file) if config_file.is_file() else {}
        with _malformed_files(root):
            specials = cls._special_tokens(root, config, rules)
            options = dict(legacy=bool(config.get("legacy", True)) if legacy is None else legacy, rules=rules,
                           add_bos_token=config.get("add_bos_token", True), add_eos_token=config.get("add_eos_token", False),
                           add_prefix_space=config.get("add_prefix_space", True) is not False,
                           sp_model_kwargs=dict(config.get("sp_model_kwargs") or {}))
            if rules == "4.31":
                added, extra_options = cls._added_tokens(root, config, specials), {}
            else:
                flags, added, extra = cls._added_tokens_441(root, config)
                extra_options = dict(token_flags=flags, all_special_tokens=extra)
        return cls(model_file, added, specials, **extra_options, **options)

    @staticmethod
    def _special_tokens(root: Path, config: dict, rules: str) -> dict[str, NoSplitToken | None]:
        """bos/eos/unk/pad as the released loader ends up holding them: the tokenizer's defaults, then
        ``tokenizer_config.json`` (``{"__type": "AddedToken"}`` dicts, or strings the Llama tokenizer wraps as
        non-stripping ``AddedToken``), then ``special_tokens_map.json`` set on top (4.31: a string stays a string)."""
        specials: dict[str, NoSplitToken | None] = {k: NoSplitToken(v, False, False, True) for k, v in _DEFAULT_SPECIALS.items()}
        for name in SPECIAL_TOKEN_NAMES:
            if name in config:
                value = config[name]
                specials[name] = NoSplitToken(value, False, False, True) if isinstance(value, str) else _token_from_value(value)
        map_file = root / "special_tokens_map.json"
        if map_file.is_file():
            for name, value in _read_json(map_file).items():
                if name in SPECIAL_TOKEN_NAMES and value:
                    token = _token_from_value(value)
                    specials[name] = token if rules == "4.31" else NoSplitToken(token.content, False, False, True)
        return specials

    @staticmethod
    def _added_tokens(root: Path, config: dict, specials: dict) -> dict[str, int]:
        """4.31: ``added_tokens.json``; a folder written by transformers >= 4.34 has ``added_tokens_decoder``
        instead (its entries beyond the sentencepiece vocabulary, special tokens excluded)."""
        added_file = root / "added_tokens.json"
        if added_file.is_file():
            return {str(k): _token_id(v, added_file) for k, v in _read_json(added_file).items()}
        special_names = {t.content for t in specials.values() if t is not None}
        decoder = config.get("added_tokens_decoder") or {}
        return {entry["content"]: _token_id(i, root / "tokenizer_config.json") for i, entry in decoder.items()
                if entry["content"] not in special_names}

    @staticmethod
    def _added_tokens_441(root: Path, config: dict) -> tuple[dict[str, NoSplitToken], dict[str, int], list[str]]:
        """4.41: every ``added_tokens_decoder`` entry with its flags (specials included), tokens only in
        ``added_tokens.json`` with no stripping; and ``additional_special_tokens``."""
        flags: dict[str, NoSplitToken] = {}
        ids: dict[str, int] = {}
        for index, entry in (config.get("added_tokens_decoder") or {}).items():
            token = _token_from_value(entry)
            flags[token.content], ids[token.content] = token, _token_id(index, root / "tokenizer_config.json")
        added_file = root / "added_tokens.json"
        for content, index in (_read_json(added_file).items() if added_file.is_file() else []):
            if content not in flags:
                flags[content], ids[content] = NoSplitToken(content, False, False, True), _token_id(index, added_file)
        extra = [t["content"] if isinstance(t, dict) else t for t in config.get("additional_special_tokens") or []]
        return flags, ids, extra

    # ------------------------------------------------------------------ ids
    @property
    def bos_token(self) -> str | None:
        return self._special_content("bos_token")

    @property
    def eos_token(self) -> str | None:
        return self._special_content("eos_token")

    def _special_content(self, name: str) -> str | None:
        token = self.special_tokens.get(name)
        return None if token is None else token.content

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
        return max([self.sp_model.GetPieceSize() - 1, *self.added_tokens.values()]) + 1

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
            if token.single_word and self.rules == "4.41":  # a token inside a word is not a token
                if i > 0 and parts[i - 1] and parts[i - 1][-1] != " ":
                    parts[i - 1], parts[i] = parts[i - 1] + part, ""
                elif i + 1 < len(parts) and parts[i + 1] and parts[i + 1][0] != " ":
                    parts[i], parts[i + 1] = part + parts[i + 1], ""
        return [p for p in parts if p]

    def _encode_piece(self, text: str) -> list[str]:
        """One piece through sentencepiece, with the released handling of the ``▁`` prefix."""
        if self.legacy:
            return self.sp_model.encode(text, out_type=str)
        if self.rules == "4.41":
            if not text.startswith((SPIECE_UNDERLINE, " ")):
                return self._encoder.encode(text, out_type=str)
            unk = self.special_tokens["unk_token"].content
            pieces = self._encoder.encode(unk + text, out_type=str)
            return pieces[self._unk_pieces:] if len(pieces) >= self._unk_pieces else pieces
        is_first = text.startswith(SPIECE_UNDERLINE)
        if is_first:
            text = text[1:]
        pieces = self.sp_model.encode(text, out_type=str)
        if not is_first and not text.startswith(" ") and pieces and pieces[0].startswith(SPIECE_UNDERLINE):
            pieces = ([pieces[0][1:]] if len(pieces[0]) > 1 else []) + pieces[1:]
        return pieces

    def _tokenize_parts(self, text: str) -> list[str]:
        tokens: list[str] = []
        for part in self._split(text):
            tokens.extend([part] if part in self.no_split else self._encode_piece(part))
        return tokens

    def tokenize(self, text: str) -> list[str]:
        """Token strings of ``text`` (no BOS)."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        if self.legacy or (self.rules == "4.41" and not text):
            return self._tokenize_parts(text)
        if self.rules == "4.31":
            return self._tokenize_parts(SPIECE_UNDERLINE + text.replace(SPIECE_UNDERLINE, " "))
        text = text.replace(SPIECE_UNDERLINE, " ")
        tokens = self._tokenize_parts(SPIECE_UNDERLINE + text if self.add_prefix_space else text)
        if len(tokens) > 1 and tokens[0] == SPIECE_UNDERLINE and tokens[1] in self.all_special_tokens:
            tokens = tokens[1:]
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
        """Text of ``ids``: added tokens verbatim, the runs between them through sentencepiece, ids outside
        the vocabulary (a model whose embedding is larger than its tokenizer) as ``<id N>``."""
        size = self.sp_model.GetPieceSize()
        by_id = {i: t for t, i in self.added_tokens.items() if i >= size}
        out, run = [], []
        for i in map(int, ids):
            if i in by_id or not 0 <= i < size:
                out.append(self.sp_model.decode(run))
                out.append(by_id.get(i, f"<id {i}>"))
                run = []
            else:
                run.append(i)
        out.append(self.sp_model.decode(run))
        return "".join(out)
