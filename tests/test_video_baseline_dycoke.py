"""DyCoke as a clip-level method: TTM and the dynamic KV rule against independent restatements, then end to end."""

import math
import warnings
from fractions import Fraction
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from litelvlm.decoding import generate
from litelvlm.lvlm import splice_and_pad
from litelvlm.pruning import check_clip_budget, get_method, method_from_spec
from litelvlm.pruning.baselines import video_dycoke  # noqa: F401  registers "dycoke"
from litelvlm.pruning.baselines.video_dycoke import (
    DyCokeSelector,
    dycoke_keep_counts,
    ttm_keep_count,
    ttm_pattern,
    ttm_select,
    ttm_token_count,
)
from litelvlm.pruning.baselines.video_dycoke_kv import DyCokeKVPlan, dycoke_kv_step
from litelvlm.pruning.clip_level import ClipTokens
from litelvlm.testing.llm import scripted_head, tiny_phi3

FRAMES = np.random.default_rng(3).integers(0, 256, size=(8, 40, 48, 3), dtype=np.uint8)
TEACHER = {"answer": "Sure, [SEG].", "mask_mode": "none"}


# ---------------------------------------------------------------------------- TTM, restated
def _numpy_ttm(features: np.ndarray, keep: int) -> list[list[int]]:
    """The released TTM restated per frame with closed-form conditions and float64 numpy: odd frames against the
    previous frame; frames 2 mod 4 against the frame two back unless they are in the last window (f >= F - 2);
    the last frame of an odd count (>= 3) dropped; keep the least similar tokens, lower index first on ties."""
    frames, num_tokens = features.shape[:2]
    out = []
    for f in range(frames):
        if frames % 2 == 1 and frames >= 3 and f == frames - 1:
            out.append([])
            continue
        if f % 2 == 1:
            reference = f - 1
        elif f % 4 == 2 and f < frames - 2:
            reference = f - 2
        else:
            out.append(list(range(num_tokens)))
            continue
        a, b = features[reference], features[f]
        sims = [float(a[j] @ b[j] / (np.linalg.norm(a[j]) * np.linalg.norm(b[j]))) for j in range(num_tokens)]
        out.append(sorted(range(num_tokens), key=lambda j: (sims[j], j))[:keep])
    return out


@pytest.mark.parametrize("frames", [1, 2, 3, 4, 5, 6, 7, 8, 9, 13, 16, 32])
@pytest.mark.parametrize("num_tokens, ratio", [(144, 0.7), (64, 0.7), (64, 0.25), (10, 1.0), (10, 0.0)])
def test_ttm_equals_a_numpy_restatement(frames, num_tokens, ratio):
    features = torch.randn(frames, num_tokens, 16, generator=torch.Generator().manual_seed(frames * 1000 + num_tokens))
    keep = ttm_keep_count(num_tokens, ratio)
    ours = ttm_select(features, keep)
    expected = _numpy_ttm(features.double().numpy(), keep)
    assert [o.tolist() for o in ours] == expected
    for f, indices in enumerate(ours):
        assert torch.equal(features[f, indices], features[f, torch.tensor(expected[f], dtype=torch.long)])
    assert sum(len(e) for e in expected) == ttm_token_count(frames, num_tokens, keep)


def test_the_released_pattern_and_counts():
    references, dropped = ttm_pattern(16)
    assert references == {1: 0, 3: 2, 5: 4, 7: 6, 9: 8, 11: 10, 13: 12, 15: 14, 2: 0, 6: 4, 10: 8} and dropped == []
    whole = sorted(set(range(16)) - set(references))
    assert whole == [0, 4, 8, 12, 14]  # frame 14: the window loop stops at F - 4
    assert ttm_pattern(7) == ({1: 0, 3: 2, 5: 4, 2: 0}, [6])  # odd: the last frame is never appended
    # int((1 - K) * N) in float, as released: 58 of LLaVA-OV's 196, 43 of 144, 19 of 64
    assert (ttm_keep_count(196, 0.7), ttm_keep_count(144, 0.7), ttm_keep_count(64, 0.7)) == (58, 43, 19)
    assert ttm_token_count(16, 144, 43) + ttm_token_count(16, 64, 19) == 5 * 208 + 11 * (43 + 19) == 1722


def test_pruned_frames_send_their_tokens_in_the_released_order():
    """Ascending similarity (topk(largest=False)), not raster order."""
    features = torch.randn(2, 144, 8, generator=torch.Generator().manual_seed(0))
    kept = ttm_select(features, 43)[1]
    similarity = torch.nn.functional.cosine_similarity(features[0], features[1], dim=1)
    assert torch.equal(kept, similarity.topk(43, largest=False).indices)
    assert not torch.equal(kept, kept.sort().values)


# ---------------------------------------------------------------------------- budgets
def _restated_keep(frames: int, target: int) -> tuple[tuple[int, int], bool]:
    """Brute force over the common grid k / 9216 (144 * 64: every j/144 and j/64 lies on it), largest r first."""
    for k in range(9216, -1, -1):
        r = Fraction(k, 9216)
        keep = (math.floor(144 * r), math.floor(64 * r))
        anchors = frames - len(ttm_pattern(frames)[0])
        total = anchors * 208 + len(ttm_pattern(frames)[0]) * sum(keep)
        if total <= target:
            return keep, True
    return (0, 0), False


@pytest.mark.parametrize("target", [0, 1039, 1040, 1500, 1722, 1997, 2000, 3000, 3327])
def test_the_merging_ratio_is_the_largest_that_fits_the_budget(target):
    assert dycoke_keep_counts(16, (144, 64), target) == _restated_keep(16, target)


def _clip_tokens(frames=16, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return ClipTokens(SimpleNamespace(grid=(24, 24)), None, torch.randn(frames, 144, 12, generator=gen), (12, 12),
                      torch.randn(frames, 64, 12, generator=gen), (8, 8))


def test_select_clip_sends_ttm_of_each_stream():
    tokens = _clip_tokens()
    out = DyCokeSelector().select_clip(tokens, None)  # neither budget: the released K = 0.7
    image, video = ttm_select(tokens.image_tokens, 43), ttm_select(tokens.video_tokens, 19)
    assert sum(f.num_tokens for f in out) == 1722
    members = tokens.cell_members()
    for f, sel in enumerate(out):
        assert torch.equal(sel.image_cells, image[f]) and torch.equal(sel.video_cells, video[f])
        assert torch.equal(sel.image, tokens.image_tokens[f, image[f]]) and torch.equal(sel.video, tokens.video_tokens[f, video[f]])
        assert torch.equal(sel.clip_indices, members[image[f]].reshape(-1).sort().values) and sel.reused_cells.numel() == 0
    fixed = DyCokeSelector(merging_ratio=0.5).select_clip(tokens, 81)  # a fixed K ignores the per-frame budget
    assert [f.image.shape[0] for f in fixed[:4]] == [144, 72, 72, 72] and [f.video.shape[0] for f in fixed[:2]] == [64, 32]


@pytest.mark.parametrize("clip_budget", [1500, 2000, 3000])
def test_a_clip_budget_sets_the_merging_ratio(clip_budget):
    tokens = _clip_tokens()
    out = DyCokeSelector().select_clip(tokens, 81, clip_budget)
    (keep_image, keep_video), fits = _restated_keep(16, clip_budget)
    assert fits and sum(f.num_tokens for f in out) <= clip_budget
    assert [f.image.shape[0] for f in out] == [144 if f in (0, 4, 8, 12, 14) else keep_image for f in range(16)]
    assert [f.video.shape[0] for f in out] == [64 if f in (0, 4, 8, 12, 14) else keep_video for f in range(16)]


def test_an_unreachable_budget_sends_the_anchor_frames_and_warns():
    tokens = _clip_tokens()
    with pytest.warns(UserWarning, match="cannot send 485 visual tokens for 16 frames.*at least 1040"):
        out = DyCokeSelector().select_clip(tokens, 81)  # default_clip_budget: 16 * 21 + round(16 * 64 * 21 / 144) = 485
    assert sum(f.num_tokens for f in out) == 1040
    with pytest.raises(ValueError, match="never prunes its anchor frames"):
        DyCokeSelector(strict_budget=True).select_clip(tokens, 81)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        everything = DyCokeSelector().select_clip(tokens, 576)  # the target covers every token: nothing pruned
    assert all(torch.equal(f.image_cells, torch.arange(144)) for f in everything)


@pytest.mark.parametrize("budget", [81, 196, None])
def test_the_released_setting_sends_the_released_ratios_whatever_the_budget(budget):
    """dycoke:released=True: K = 0.7 (43 of 144 and 19 of 64 per pruned frame, 1,722 tokens), l = 3, p = 0.8, 0.9."""
    tokens = _clip_tokens()
    released = method_from_spec("dycoke:released=True")
    assert (released.merging_ratio, released.layer, released.prune_ratio, released.similarity_threshold) == (0.7, 3, 0.8, 0.9)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        frames = released.select_clip(tokens, budget)
    whole = (0, 4, 8, 12, 14)
    assert [(f.image.shape[0], f.video.shape[0]) for f in frames] == [(144, 64) if f in whole else (43, 19) for f in range(16)]
    assert sum(f.num_tokens for f in frames) == 1722
    plan = released.llm_plan([f.image.shape[0] for f in frames], sum(f.video.shape[0] for f in frames))
    assert (plan.layer, plan.prune_ratio, plan.similarity_threshold) == (3, 0.8, 0.9)


def test_the_budget_driven_setting_stays_the_default_and_the_released_one_refuses_a_clip_budget():
    tokens = _clip_tokens()
    with pytest.warns(UserWarning, match="cannot send 485"):
        assert sum(f.num_tokens for f in get_method("dycoke").select_clip(tokens, 81)) == 1040  # K = 1 at 81
    released = get_method("dycoke", released=True)
    with pytest.raises(ValueError, match="takes no clip budget: released=True runs the release's merging ratio K = 0.7"):
        released.select_clip(tokens, 81, clip_budget=2000)
    with pytest.raises(ValueError, match="takes no clip budget"):
        check_clip_budget("dycoke:released=True", 2000)
    check_clip_budget("dycoke", 2000)
    with pytest.raises(ValueError, match="released=True runs the release's merging_ratio=0.7; got merging_ratio=0.5"):
        get_method("dycoke", released=True, merging_ratio=0.5)
    with pytest.raises(ValueError, match="released=True runs the release's layer=3; got layer=5"):
        get_method("dycoke", released=True, layer=5)
    with pytest.raises(ValueError, match="released must be True or False"):
        get_method("dycoke", released="yes")


def test_bad_options_are_refused():
    for options in ({"merging_ratio": 1.5}, {"layer": 0}, {"prune_ratio": -0.1}):
        with pytest.raises(ValueError):
            get_method("dycoke", **options)
    assert isinstance(get_method("dycoke"), DyCokeSelector) and get_method("dycoke").uses_text is False


# ---------------------------------------------------------------------------- the dynamic KV rule on a tiny Phi-3
def _phi3(attn_implementation: str, window: int, layers: int = 4):
    model = tiny_phi3(attn_implementation, layers=layers, window=window)
    with torch.no_grad():
        for decoder_layer in model.model.layers:  # sharper attention than the random init: steps differ in what they attend
            decoder_layer.self_attn.qkv_proj.weight.mul_(8)
    return model


@pytest.fixture(scope="module", params=[64, 11], ids=["no-window-cut", "window-11"])
def phi3s(request):
    sdpa, eager = _phi3("sdpa", request.param), _phi3("eager", request.param)
    eager.load_state_dict(sdpa.state_dict())
    return sdpa, eager, request.param


NUM_VISUAL = 24


def _prompt(model):
    visual = torch.randn(NUM_VISUAL, 32, generator=torch.Generator().manual_seed(5)) * 3
    return splice_and_pad([[1, 3, 4, 5, 6, -200, 10, 11, 12]], [[visual]], model.get_input_embeddings(), -200)


def _plan_generate(model, layer, prune_ratio, threshold, use_cache, steps=8):
    batch = _prompt(model)
    plan = DyCokeKVPlan([NUM_VISUAL], 0, layer, prune_ratio, threshold)
    forward = plan.generation_forward(model, batch.token_ids, use_cache)
    gen = generate(model, lambda: batch.inputs_embeds, max_new_tokens=steps, eos_token_ids=set(), seg_token_id=-7,
                   use_cache=use_cache, forward=forward)
    return gen.token_ids, forward.steps


def _restated_generate(eager, layer, prune_ratio, threshold, window, steps=8):
    """The released loop restated with eager attention weights and an explicit mask: each decoding step's visual
    attention (layer l-1, head mean, last row) is compared with the previous step's; below the threshold its row
    in layers >= l sees only the most attended visual keys (lower position first on ties), else every key."""
    batch = _prompt(eager)
    visual = [int(p) for p in (batch.token_ids[0] == -1).nonzero().flatten()]
    keep = int(len(visual) * (1 - prune_ratio))
    rows, previous, tokens = {}, None, []
    sequence = batch.inputs_embeds
    for step in range(steps):
        length = sequence.shape[1]
        out = eager.model(inputs_embeds=sequence, output_attentions=True, output_hidden_states=True, use_cache=False)
        if step > 0:  # position length - 1 was fed by this decoding step
            attention = out.attentions[layer - 1][0, :, length - 1].double().mean(0)
            current = [float(attention[p]) for p in visual]
            if previous is None:
                similarity = 0.0
            else:
                dot = sum(x * y for x, y in zip(current, previous))
                similarity = dot / max(math.sqrt(sum(x * x for x in current)) * math.sqrt(sum(y * y for y in previous)), 1e-8)
            previous = current
            if similarity < threshold:
                best = sorted(range(len(visual)), key=lambda j: (-current[j], j))[:keep]
                rows[length - 1] = sorted(visual[j] for j in best)
            else:
                rows[length - 1] = None
        mask = torch.full((length, length), torch.finfo(torch.float32).min)
        for i in range(length):
            for j in range(max(0, i - window + 1), i + 1):
                if rows.get(i) is None or j not in visual or j in rows[i]:
                    mask[i, j] = 0.0
        hidden = out.hidden_states[layer]  # the input of layer l (layers < l are never pruned)
        positions = torch.arange(length)[None]
        rotary = eager.model.rotary_emb(hidden, positions)
        for decoder_layer in eager.model.layers[layer:]:
            hidden = decoder_layer(hidden, attention_mask=mask[None, None], position_embeddings=rotary, position_ids=positions)
        token = int(eager.lm_head(eager.model.norm(hidden[:, -1]))[0].argmax())
        tokens.append(token)
        sequence = torch.cat([sequence, eager.get_input_embeddings()(torch.tensor([[token]]))], dim=1)
    return tokens, rows, visual


@torch.no_grad()
@pytest.mark.parametrize("layer", [1, 3])
@pytest.mark.parametrize("threshold", [0.9, 0.995, 2.0])
def test_decoding_equals_an_eager_restatement_that_masks_pruned_visual_keys(phi3s, layer, threshold):
    sdpa, eager, window = phi3s
    expected, rows, visual = _restated_generate(eager, layer, 0.8, threshold, window)
    for model in (sdpa, eager):
        for use_cache in (True, False):
            tokens, steps = _plan_generate(model, layer, 0.8, threshold, use_cache)
            assert tokens == expected, (model.config._attn_implementation, use_cache)
            assert [s.position for s in steps] == sorted(rows)
            for s in steps:
                chosen = None if s.kept is None else sorted(visual[int(k)] for k in s.kept)
                assert chosen == rows[s.position]
                assert s.kept is None or s.kept.numel() == int(NUM_VISUAL * 0.2)
    _, steps = _plan_generate(sdpa, layer, 0.8, threshold, True)
    assert steps[0].kept is not None and steps[0].similarity == 0.0  # the first step always prunes (similarity 0)
    if threshold > 1:
        assert all(s.kept is not None for s in steps)
    if threshold == 0.9:  # the released threshold: some steps pruned, some left whole
        assert {kept is None for kept in rows.values()} == {True, False}


@torch.no_grad()
def test_the_step_rule_prunes_only_when_the_attention_moved():
    """Released: similarity >= 0.9 leaves the step unpruned (kv_cache stays None), it does not reuse the last set."""
    a = torch.tensor([0.1, 0.5, 0.2, 0.4])
    kept, similarity = dycoke_kv_step(a, None, 2)
    assert kept.tolist() == [1, 3] and similarity == 0.0
    assert dycoke_kv_step(a * 2, a, 2) == (None, pytest.approx(1.0))
    kept, similarity = dycoke_kv_step(torch.tensor([0.5, 0.0, 0.0, 0.1]), a, 2)
    assert kept.tolist() == [0, 3] and similarity < 0.9
    assert dycoke_kv_step(torch.tensor([0.3, 0.3, 0.3, 0.1]), None, 2)[0].tolist() == [0, 1]  # ties: lower index


@torch.no_grad()
def test_both_branches_occur_and_the_cache_and_full_pass_agree_on_states(phi3s):
    sdpa, _, window = phi3s
    batch = _prompt(sdpa)
    plan = DyCokeKVPlan([NUM_VISUAL], 0, 2, 0.8, 0.9)
    cached = plan.generation_forward(sdpa, batch.token_ids, True)
    hidden, state = cached(batch.inputs_embeds, None)
    sequence = batch.inputs_embeds
    embed, changed = sdpa.get_input_embeddings(), []
    for step in range(12):  # past the window
        token = embed(torch.tensor([[(7 * step) % 40]]))
        hidden, state = cached(token, state)
        sequence = torch.cat([sequence, token], dim=1)
        visual = (batch.token_ids[0] == -1).nonzero().flatten()
        full, steps = plan.full_forward(sdpa, sequence, visual, batch.token_ids.shape[1])
        torch.testing.assert_close(hidden[0, -1], full[0, -1], rtol=1e-4, atol=1e-5)
        assert [(s.position, None if s.kept is None else s.kept.tolist()) for s in steps] == \
               [(s.position, None if s.kept is None else s.kept.tolist()) for s in cached.steps]
        plain = sdpa.model(inputs_embeds=sequence, use_cache=False).last_hidden_state
        changed.append(not torch.allclose(full[0, -1], plain[0, -1], atol=1e-4))
    kinds = {s.kept is None for s in cached.steps}
    assert kinds == {True, False}, "this setting should both prune and skip steps"
    assert changed[0] and any(changed)  # the first step always prunes, and pruning changes the state


@torch.no_grad()
def test_no_pruning_equals_the_plain_model(phi3s):
    sdpa, _, _ = phi3s
    batch = _prompt(sdpa)
    plain = generate(sdpa, lambda: batch.inputs_embeds, max_new_tokens=8, eos_token_ids=set(), seg_token_id=-7).token_ids
    for prune_ratio, threshold in ((0.0, 0.9), (0.8, -1.0)):  # keep every visual entry / never below the threshold
        for use_cache in (True, False):
            assert _plan_generate(sdpa, 2, prune_ratio, threshold, use_cache)[0] == plain
    plan = DyCokeKVPlan([NUM_VISUAL], 0)
    out = plan.prefill(sdpa, batch)  # teacher forced: the unpruned forward, as released
    torch.testing.assert_close(out.hidden, sdpa.model(inputs_embeds=batch.inputs_embeds, use_cache=False).last_hidden_state)
    assert torch.equal(out.token_ids, batch.token_ids)


def test_a_layer_too_deep_for_the_llm_is_moved_up_with_a_warning():
    model = _phi3("sdpa", 64, layers=2)
    batch = _prompt(model)
    with pytest.warns(UserWarning, match="layer l=3 does not fit an LLM of 2 layers; pruning from layer 1"):
        forward = DyCokeKVPlan([NUM_VISUAL], 0, layer=3).generation_forward(model, batch.token_ids, True)
    hidden, state = forward(batch.inputs_embeds, None)
    assert state["cache"].capture == 0 and hidden.shape[1] == batch.inputs_embeds.shape[1]
    with pytest.raises(ValueError, match="needs 1 <= l < 1"):
        DyCokeKVPlan([NUM_VISUAL], 0, layer=1).generation_forward(_phi3("sdpa", 64, layers=1), batch.token_ids, True)
    with pytest.raises(ValueError, match="plan expects 25"):
        DyCokeKVPlan([NUM_VISUAL], 1, layer=1).generation_forward(model, batch.token_ids, True)


# ---------------------------------------------------------------------------- end to end (tiny VideoGLaMM)


def _capture_forwards(monkeypatch):
    forwards, original = [], DyCokeKVPlan.generation_forward

    def capturing(self, llm, prompt_token_ids, use_cache):
        forwards.append(original(self, llm, prompt_token_ids, use_cache))
        return forwards[-1]

    monkeypatch.setattr(DyCokeKVPlan, "generation_forward", capturing)
    return forwards


@torch.no_grad()
def test_teacher_forced_end_to_end(tiny_video_segmenter):
    seg = tiny_video_segmenter
    with pytest.warns(UserWarning, match="cannot send 485"):
        a = seg.segment(FRAMES, ["a dog"], budget=81, method="dycoke", **TEACHER)
    with pytest.warns(UserWarning):
        b = seg.segment(FRAMES, ["a dog"], budget=81, method="dycoke", **TEACHER)
    assert a.llm_visual_tokens == b.llm_visual_tokens == [1040] and a.method == "dycoke"
    frames = a.frame_tokens[0]
    assert [f.image_cells.numel() for f in frames] == [144 if f in (0, 4, 8, 12, 14) else 0 for f in range(16)]
    assert all(torch.equal(x, y) for x, y in zip(a.kept[0], b.kept[0])) and a.answers == b.answers
    c = seg.segment(FRAMES, ["a dog"], budget=81, method="dycoke", clip_budget=2000, **TEACHER)
    assert c.llm_visual_tokens == [1997]  # 5 * 208 + 11 * (60 + 27): r = 27/64
    d = seg.segment(FRAMES, ["a dog"], budget=81, method=get_method("dycoke", merging_ratio=0.7), **TEACHER)
    assert d.llm_visual_tokens == [1722]


@torch.no_grad()
def test_generation_end_to_end_with_and_without_the_cache(tiny_video_segmenter, monkeypatch):
    seg = tiny_video_segmenter
    forwards = _capture_forwards(monkeypatch)
    method = get_method("dycoke", layer=1, merging_ratio=0.7, similarity_threshold=0.999)
    results = {}
    for use_cache in (True, False, True):
        with scripted_head(seg.model.llm, [5, 9, 5, 9, 11, 5]):
            results.setdefault(use_cache, []).append(
                seg.segment(FRAMES, ["a dog"], budget=81, method=method, max_new_tokens=6, use_cache=use_cache, mask_mode="none"))
    cached, uncached = results[True], results[False][0]
    assert cached[0].answers == cached[1].answers == uncached.answers
    assert cached[0].llm_visual_tokens == uncached.llm_visual_tokens == [1722]
    assert cached[0].forward_passes == uncached.forward_passes == 6
    steps = [[(s.position, None if s.kept is None else s.kept.tolist()) for s in f.steps] for f in forwards]
    assert len(steps[0]) == 5 and steps[0] == steps[1] == steps[2]  # 5 decoding steps after the prefill
    assert all(kept is None or len(kept) == int(1722 * 0.2) for _, kept in steps[0])
    with pytest.warns(UserWarning, match="l=3 does not fit an LLM of 2 layers"):  # the released l = 3, 2-layer tiny LLM
        shallow = seg.segment(FRAMES, ["a dog"], budget=81, method=get_method("dycoke", merging_ratio=0.7), max_new_tokens=2,
                              mask_mode="none")
    assert shallow.forward_passes == 2
