"""The released GLaMM token ids (slow LlamaTokenizer of transformers 4.28/4.31) from ``ReleasedLlamaTokenizer``.

Held three ways: hand-written expected pieces and ids for a tiny sentencepiece model trained here, an
independent restatement of the released rules fuzzed over random texts, and GLaMM's released multi-turn
prompt with its [SEG] read-out positions. The module matched transformers 4.31.0 (and 4.28.0 for legacy /
absent) on these folders in a scratch comparison; CI cannot install transformers 4 beside 5.
"""

import json
import random

import pytest
import torch

from litelvlm.glamm.prompt import IMAGE_TOKEN_INDEX, SYSTEM_PROMPT, build_conversation
from litelvlm.lvlm import hidden_before, splice_and_pad, tokenize_with_image
from litelvlm.tokenizer import SPIECE_UNDERLINE, ReleasedLlamaTokenizer
from litelvlm.tokenizer_files import GLAMM_ADDED_TOKENS, write_llama_tokenizer

ADDED = {tok: 600 + i for i, tok in enumerate(GLAMM_ADDED_TOKENS)}  # <im_start> 600 ... </p> 606
VARIANTS = {"absent": None, "true": True, "false": False}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("tok")
    out = {}
    for name, legacy in VARIANTS.items():
        write_llama_tokenizer(root / name, legacy=legacy)
        out[name] = root / name
    plain_eos = root / "plain_eos"  # eos given as a plain string in special_tokens_map.json
    write_llama_tokenizer(plain_eos)
    specials = json.loads((plain_eos / "special_tokens_map.json").read_text())
    (plain_eos / "special_tokens_map.json").write_text(json.dumps(dict(specials, eos_token="</s>")))
    out["plain_eos"] = plain_eos
    return out


@pytest.fixture(scope="module")
def toks(folders):
    return {name: ReleasedLlamaTokenizer.from_pretrained(path) for name, path in folders.items()}


# ---------------------------------------------------------------------------- hand-written expectations

CONVERSATION = build_conversation(
    ["Can you segment the  man on the left  in this image?", "Please segment the red car, left. in this image."],
    ["Sure, it is [SEG].", "[SEG]."],
)
SYSTEM_PIECES = ("▁A ▁chat ▁between ▁a ▁curious ▁human ▁and ▁an ▁artificial ▁intelligence ▁assistant . ▁The ▁assistant "
                 "▁gives ▁helpful , ▁detailed , ▁and ▁polite ▁answers ▁to ▁the ▁human ' s ▁questions . ▁USER : ▁The").split()
FIRST_TURN = ("▁an ▁overview ▁of ▁the ▁picture . <0x0A> Can ▁you ▁segment ▁the ▁ ▁man ▁on ▁the ▁left ▁ ▁in ▁this ▁image ? "
              "▁ASSISTANT : ▁Sure , ▁it ▁is").split()
SECOND_TURN = ": ▁Please ▁segment ▁the ▁red ▁car , ▁left . ▁in ▁this ▁image . ▁ASSISTANT :".split()
# Legacy: every piece after an added token gets sentencepiece's "▁" prefix (the space itself was stripped).
LEGACY_AFTER_IMAGE = (["<im_end>", "▁provides"] + FIRST_TURN + ["[SEG]", "▁", ".", "</s>", "▁USER"] + SECOND_TURN
                      + ["[SEG]", "▁", ".", "</s>"])
# Non-legacy (4.31, "legacy": false): that prefix is removed; "provides" and "USER" are not pieces -> <unk>.
NON_LEGACY_AFTER_IMAGE = (["<im_end>", "provides"] + FIRST_TURN + ["[SEG]", ".", "</s>", "USER"] + SECOND_TURN
                          + ["[SEG]", ".", "</s>"])


def _ids(tok, pieces):
    return [ADDED[p] if p in ADDED else tok.sp_model.piece_to_id(p) for p in pieces]


@pytest.mark.parametrize("variant", ["absent", "true", "false"])
def test_released_multi_turn_prompt_gives_the_hand_written_ids(toks, variant):
    tok = toks[variant]
    before, after = CONVERSATION.split("<image>")
    expected_after = NON_LEGACY_AFTER_IMAGE if variant == "false" else LEGACY_AFTER_IMAGE
    assert tok.tokenize(before) == SYSTEM_PIECES + ["<im_start>"]
    assert tok.tokenize(after) == expected_after
    ids = tokenize_with_image(CONVERSATION, tok)
    expected = [1] + _ids(tok, SYSTEM_PIECES) + [600, IMAGE_TOKEN_INDEX] + _ids(tok, expected_after)
    assert ids == expected
    assert ids[len(SYSTEM_PIECES) + 1 : len(SYSTEM_PIECES) + 4] == [600, -200, 601]  # no "▁" around <im_start>
    if variant == "false":
        assert ids[len(SYSTEM_PIECES) + 4] == 0 and expected_after[1] == "provides"  # <unk>, as 4.31 gives it
    assert ids.count(ADDED["[SEG]"]) == 2


def test_special_token_flags_decide_the_stripping_around_it(toks):
    """</s> as an AddedToken dict (released files) keeps its neighbours' spaces; as a plain string it strips them."""
    assert toks["absent"].tokenize("a </s> b") == ["▁a", "▁", "</s>", "▁", "▁b"]
    assert toks["plain_eos"].tokenize("a </s> b") == ["▁a", "</s>", "▁b"]
    assert toks["absent"].tokenize("a [SEG] b") == ["▁a", "[SEG]", "▁b"]  # added tokens always strip both sides


@pytest.mark.parametrize("text, legacy_pieces, non_legacy_pieces", [
    ("  [SEG]  ", ["[SEG]"], ["[SEG]"]),
    (" [SEG] , it . ", ["[SEG]", "▁", ",", "▁it", "▁", ".", "▁"], ["[SEG]", ",", "▁it", "▁", ".", "▁"]),
    ("the dog, left .[SEG]? ", ["▁the", "▁dog", ",", "▁left", "▁", ".", "[SEG]", "▁", "?", "▁"],
     ["▁the", "▁dog", ",", "▁left", "▁", ".", "[SEG]", "?", "▁"]),
    ("<p> the cat </p>", ["<p>", "▁the", "▁cat", "</p>"], ["<p>", "the", "▁cat", "</p>"]),
])
def test_leading_trailing_spaces_and_punctuation(toks, text, legacy_pieces, non_legacy_pieces):
    assert toks["absent"].tokenize(text) == legacy_pieces
    assert toks["false"].tokenize(text) == non_legacy_pieces


def test_bos_and_added_ids(toks):
    tok = toks["absent"]
    assert tok("[SEG]").input_ids == [1, 604] and tok("[SEG]", add_special_tokens=False).input_ids == [604]
    assert toks["false"]("[SEG]", add_special_tokens=False).input_ids == [604]
    assert (tok.bos_token_id, tok.eos_token_id, tok.unk_token_id, tok.pad_token_id, len(tok)) == (1, 2, 0, 0, 607)


def test_pinned_transformers_ignores_the_legacy_key(folders, toks):
    """The release pins transformers 4.28.0.dev0, which knows no ``legacy`` key: forcing legacy reproduces it."""
    pinned = ReleasedLlamaTokenizer.from_pretrained(folders["false"], legacy=True)
    assert pinned.tokenize(CONVERSATION) == toks["absent"].tokenize(CONVERSATION)
    assert pinned.tokenize(CONVERSATION) != toks["false"].tokenize(CONVERSATION)


# ---------------------------------------------------------------------------- independent restatement

def restated_pieces(text, sp, no_split, legacy):
    """The released rules written as a character scan (independent of the module's regex split)."""
    if not legacy:
        text = SPIECE_UNDERLINE + text.replace(SPIECE_UNDERLINE, " ")
    segments, buf, i = [], "", 0
    tokens = sorted(no_split, key=len, reverse=True)
    while i < len(text):
        match = next((t for t in tokens if text.startswith(t, i)), None)
        if match:
            segments.append(("text", buf))
            segments.append(("tok", match))
            buf, i = "", i + len(match)
        else:
            buf, i = buf + text[i], i + 1
    segments.append(("text", buf))
    for k, (kind, value) in enumerate(segments):
        if kind != "tok":
            continue
        lstrip, rstrip = no_split[value]
        if rstrip and k + 1 < len(segments) and segments[k + 1][1]:
            segments[k + 1] = ("text", segments[k + 1][1].lstrip())
        if lstrip and k > 0 and segments[k - 1][1]:
            segments[k - 1] = ("text", segments[k - 1][1].rstrip())
    out = []
    for kind, value in segments:
        if not value:
            continue
        if kind == "tok":
            out.append(value)
            continue
        first = value.startswith(SPIECE_UNDERLINE)
        body = value[1:] if (not legacy and first) else value
        pieces = sp.encode(body, out_type=str)
        if not legacy and not first and not body.startswith(" ") and pieces and pieces[0].startswith(SPIECE_UNDERLINE):
            pieces = ([pieces[0][1:]] if len(pieces[0]) > 1 else []) + pieces[1:]
        out.extend(pieces)
    return out


def _random_text(rng):
    words = ["the", "man", "left", "Sure", ",", ".", "?", "it", "is", "dog", "ok", "é", "x1", "ASSISTANT:", "USER:", "▁"]
    specials = list(GLAMM_ADDED_TOKENS) + ["<s>", "</s>", "<unk>"]
    spaces = ["", " ", "  ", "\n", "\t ", " \n "]
    return "".join(rng.choice(spaces) + (rng.choice(specials) if rng.random() < 0.3 else rng.choice(words)) for _ in range(rng.randint(1, 12)))


@pytest.mark.parametrize("variant", ["absent", "true", "false", "plain_eos"])
def test_module_equals_an_independent_restatement_on_random_texts(toks, variant):
    tok = toks[variant]
    no_split = {t: (True, True) for t in GLAMM_ADDED_TOKENS}
    plain_eos = variant == "plain_eos"
    no_split.update({"<s>": (False, False), "</s>": (plain_eos, plain_eos), "<unk>": (False, False)})
    rng = random.Random(0)
    for _ in range(400):
        text = _random_text(rng)
        assert tok.tokenize(text) == restated_pieces(text, tok.sp_model, no_split, tok.legacy), repr(text)


# ---------------------------------------------------------------------------- [SEG] read-out positions

@pytest.mark.parametrize("variant", ["absent", "true", "false"])
def test_seg_positions_follow_from_the_released_ids(toks, variant):
    """With V visual tokens spliced at <image>, the state before each [SEG] is at (index in ids) + V - 2:
    the released mask [zeros(V - 1), ids[1:] == SEG] read one position early."""
    tok = toks[variant]
    assert SYSTEM_PROMPT.startswith("A chat between a curious human") and SYSTEM_PROMPT.endswith("the human's questions.")
    ids = tokenize_with_image(CONVERSATION, tok)
    visual = 7
    embed = torch.nn.Embedding(700, 4)
    batch = splice_and_pad([ids], [[torch.zeros(visual, 4)]], embed, IMAGE_TOKEN_INDEX)
    hidden = torch.arange(batch.inputs_embeds.shape[1], dtype=torch.float32)[None, :, None].expand(1, -1, 4)
    read = hidden_before(hidden, batch.token_ids, ADDED["[SEG]"])[0][:, 0].long().tolist()
    seg_index = [i for i, t in enumerate(ids) if t == ADDED["[SEG]"]]
    assert read == [i + visual - 2 for i in seg_index]
    released_mask = torch.cat([torch.zeros(visual - 1, dtype=torch.bool), torch.tensor(ids[1:]) == ADDED["[SEG]"], torch.zeros(1, dtype=torch.bool)])
    assert released_mask.nonzero().flatten().tolist() == read


# ---------------------------------------------------------------------------- ids written by the released transformers

FIXTURES = __import__("pathlib").Path(__file__).parent / "fixtures" / "tokenizers"


@pytest.mark.parametrize("name, rules, legacy", [
    ("glamm_legacy_absent", "4.31", None), ("glamm_legacy_false", "4.31", None), ("glamm_plain_eos", "4.31", None),
    ("glamm_legacy_false@4.28", "4.31", True), ("phi3_videoglamm", "4.41", None),
])
def test_ids_equal_those_the_released_transformers_wrote(name, rules, legacy):
    """tests/fixtures/tokenizers/expected_ids.json: ids from transformers 4.31.0 / 4.28.0 (GLaMM) and 4.41.2
    (VideoGLaMM) slow tokenizers on these folders (make_fixture.py there), 155 texts each."""
    expected = json.loads((FIXTURES / "expected_ids.json").read_text())[name]
    tok = ReleasedLlamaTokenizer.from_pretrained(FIXTURES / name.split("@")[0], rules=rules, legacy=legacy)
    got = [tok(text).input_ids for text in expected["texts"]]
    mismatched = [t for t, g, e in zip(expected["texts"], got, expected["ids"]) if g != e]
    assert not mismatched, f"{len(mismatched)} texts differ from transformers {expected['transformers']}, e.g. {mismatched[:3]}"


def test_videoglamm_prompt_keeps_the_leading_piece_of_the_released_tokenizer():
    """The VideoGLaMM prompt starts with <|system|>, an added token outside all_special_tokens: transformers 4.41
    keeps the "▁" it puts in front (Phi-3 id 29871); transformers 5 does not."""
    from video.prompt import build_chat, prompt_ids, video_question

    tok = ReleasedLlamaTokenizer.from_pretrained(FIXTURES / "phi3_videoglamm", rules="4.41")
    ids = prompt_ids(build_chat(video_question("the dog"), 16, "Sure, [SEG]."), tok)
    system = tok.convert_tokens_to_ids("<|system|>")
    assert ids[:2] == [tok.sp_model.piece_to_id(SPIECE_UNDERLINE), system] and ids.count(IMAGE_TOKEN_INDEX) == 1
    assert ids[ids.index(IMAGE_TOKEN_INDEX) + 1 : ids.index(IMAGE_TOKEN_INDEX) + 3] == [tok.sp_model.piece_to_id(SPIECE_UNDERLINE),
                                                                                      tok.sp_model.piece_to_id("<0x0A>")]
