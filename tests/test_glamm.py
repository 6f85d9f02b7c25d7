"""The GLaMM image path on a tiny random checkpoint in the GLaMM-RefSeg layout."""

import json
import shutil

import numpy as np
import pytest
import torch

from litelvlm.checkpoint import CheckpointDir
from litelvlm.glamm import GLaMMSegmenter
from litelvlm.glamm.prompt import IMAGE_TOKEN_INDEX, build_conversation, question_for, tokenize_with_image
from litelvlm.testing import make_tiny_glamm, write_sharded

EXPRESSIONS = ["the man on the left", "a red car", "the small white dog"]


@pytest.fixture(scope="module")
def image():
    return np.random.default_rng(0).integers(0, 256, size=(150, 210, 3), dtype=np.uint8)


def test_tiny_checkpoint_is_written_in_the_released_layout(tiny_glamm_dirs):
    """What the released merge_lora_weights.py + save_pretrained (transformers 4.28/4.31) writes (FACTS §2)."""
    root = tiny_glamm_dirs["glamm"]
    for name in ("config.json", "generation_config.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json",
                 "added_tokens.json", "pytorch_model.bin.index.json", "pytorch_model-00001-of-00002.bin"):
        assert (root / name).exists(), name
    ckpt = CheckpointDir(root)
    keys = set(ckpt.keys())
    for key in ("model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight", "model.norm.weight", "lm_head.weight",
                "model.mm_projector.0.weight", "model.mm_projector.2.bias", "model.text_hidden_fcs.0.0.weight",
                "model.text_hidden_fcs.0.2.weight", "model.grounding_encoder.image_encoder.patch_embed.proj.weight",
                "model.grounding_encoder.image_encoder.blocks.1.attn.rel_pos_h",
                "model.grounding_encoder.image_encoder.neck.0.weight",
                "model.grounding_encoder.prompt_encoder.no_mask_embed.weight",
                "model.grounding_encoder.prompt_encoder.pe_layer.positional_encoding_gaussian_matrix",
                "model.grounding_encoder.mask_decoder.transformer.layers.0.self_attn.q_proj.weight",
                "model.grounding_encoder.mask_decoder.output_hypernetworks_mlps.0.layers.0.weight",
                "model.layers.0.self_attn.rotary_emb.inv_freq", "model.layers.1.self_attn.rotary_emb.inv_freq",
                "model.region_encoder.mlvl_fuse.fuse_convs.4.gn.bias", "model.region_encoder.roi_align.flatten_linear.weight"):
        assert key in keys, key
    assert len([k for k in keys if k.startswith("model.region_encoder.")]) == 43
    dtypes = {k: t.dtype for k, t in ckpt.iter_tensors(sorted(keys))}
    groups = {"model.layers.0.mlp.up_proj.weight": torch.bfloat16, "lm_head.weight": torch.bfloat16,
              "model.mm_projector.0.weight": torch.bfloat16, "model.region_encoder.roi_align.updims.weight": torch.bfloat16,
              "model.grounding_encoder.mask_decoder.iou_token.weight": torch.float32,
              "model.text_hidden_fcs.0.2.weight": torch.float32, "model.layers.0.self_attn.rotary_emb.inv_freq": torch.bfloat16}
    assert {k: dtypes[k] for k in groups} == groups
    config = json.loads((root / "config.json").read_text())
    assert config["model_type"] == "llava" and "rope_theta" not in config and config["with_region"] is True
    assert config["mm_vision_select_layer"] == -2 and config["mm_use_im_start_end"] is True
    tok_config = json.loads((root / "tokenizer_config.json").read_text())
    assert "added_tokens_decoder" not in tok_config and "legacy" not in tok_config
    assert tok_config["bos_token"]["__type"] == "AddedToken" and tok_config["pad_token"] is None
    added = json.loads((root / "added_tokens.json").read_text())
    assert list(dict(sorted(added.items(), key=lambda kv: kv[1]))) == ["<im_start>", "<im_end>", "<bbox>", "<point>", "[SEG]", "<p>", "</p>"]
    assert json.loads((root / "special_tokens_map.json").read_text())["pad_token"] == "<unk>"


def test_released_checkpoint_loads_and_reports_what_it_skipped(tiny_segmenter):
    summary = tiny_segmenter.model.load_summary
    assert summary.ignored_buffers == ["model.layers.0.self_attn.rotary_emb.inv_freq", "model.layers.1.self_attn.rotary_emb.inv_freq"]
    assert summary.skipped == {"region_encoder": 43}
    assert summary.stored_dtypes["llm"] == ["bfloat16"] and summary.stored_dtypes["grounding_encoder"] == ["float32"]
    assert summary.stored_dtypes["text_hidden_fcs"] == ["float32"]
    assert "ignored 2 rotary inv_freq buffers" in str(summary)


def test_each_expression_feeds_exactly_budget_visual_tokens(tiny_segmenter, image, monkeypatch):
    seen = []
    original = tiny_segmenter.model.prefill_hidden

    def spy(inputs_embeds, attention_mask):
        seen.append(attention_mask.sum(1).tolist())
        return original(inputs_embeds, attention_mask)

    monkeypatch.setattr(tiny_segmenter.model, "prefill_hidden", spy)
    for budget in (192, 64, 1):
        result = tiny_segmenter.segment(image, EXPRESSIONS, budget=budget)
        assert result.num_visual_tokens == budget and all(k.numel() == budget for k in result.kept)
        assert all(len(set(k.tolist())) == budget for k in result.kept)
        text_lengths = [
            len(tokenize_with_image(build_conversation([question_for(e)], ["Sure, it is [SEG]."]), tiny_segmenter.tokenizer)) - 1
            for e in EXPRESSIONS
        ]
        assert seen[-1] == [n + budget for n in text_lengths]
        assert result.masks.shape == (3, 150, 210) and result.masks.dtype == bool


def test_budget_none_is_the_unpruned_model(tiny_segmenter, image):
    result = tiny_segmenter.segment(image, EXPRESSIONS[:1])
    assert result.num_visual_tokens == 576 and result.kept[0].tolist() == list(range(576))


def test_batched_equals_one_by_one(tiny_segmenter, image):
    batched = tiny_segmenter.segment(image, EXPRESSIONS, budget=128)
    for i, expr in enumerate(EXPRESSIONS):
        single = tiny_segmenter.segment(image, [expr], budget=128)
        assert torch.equal(single.kept[0], batched.kept[i])
        torch.testing.assert_close(single.seg_embeddings[0], batched.seg_embeddings[i], rtol=1e-4, atol=1e-5)
        assert (single.masks[0] != batched.masks[i]).mean() < 1e-3


def test_seg_embedding_uses_the_released_offset(tiny_segmenter, image):
    """Restates the released read-out: mask = [zeros(V-1), ids[1:] == SEG, zeros(1)] over the hidden states."""
    seg, model = tiny_segmenter, tiny_segmenter.model
    budget = 100
    result = seg.segment(image, EXPRESSIONS[:1], budget=budget)
    ids = torch.tensor(tokenize_with_image(build_conversation([question_for(EXPRESSIONS[0])], ["Sure, it is [SEG]."]), seg.tokenizer))
    pixels = seg.clip.image_processor(images=[image], return_tensors="pt").pixel_values
    embeds = seg.pruner.text_embeds([question_for(EXPRESSIONS[0])])
    features = seg.pruner(pixels, budget, text_embeds=embeds).features[0]
    slot = int((ids == IMAGE_TOKEN_INDEX).nonzero())
    text = model.embed_tokens(torch.cat([ids[:slot], ids[slot + 1 :]]))
    sequence = torch.cat([text[:slot], model.mm_projector(features), text[slot:]])[None]
    hidden = model.llm.model(inputs_embeds=sequence).last_hidden_state[0]
    seg_mask = torch.cat([torch.zeros(budget - 1, dtype=torch.bool), ids[1:] == seg.seg_token_id, torch.zeros(1, dtype=torch.bool)])
    expected = model.text_hidden_fcs(hidden[seg_mask])
    torch.testing.assert_close(result.seg_embeddings, expected, rtol=1e-4, atol=1e-5)


def test_image_scope_prunes_jointly_and_multi_turn_gives_one_mask_per_answer(tiny_segmenter, image):
    joint = tiny_segmenter.segment(image, EXPRESSIONS, budget=96, prune_scope="image")
    assert all(torch.equal(k, joint.kept[0]) for k in joint.kept)
    embeds = tiny_segmenter.pruner.text_embeds([question_for(e) for e in EXPRESSIONS])
    pixels = tiny_segmenter.clip.image_processor(images=[image], return_tensors="pt").pixel_values
    assert torch.equal(joint.kept[0], tiny_segmenter.pruner(pixels, 96, text_embeds=embeds).indices[0])
    multi = tiny_segmenter.segment(image, EXPRESSIONS, budget=96, prune_scope="image", conversation="multi_turn")
    assert multi.masks.shape == (3, 150, 210) and multi.seg_embeddings.shape[0] == 3
    bare = tiny_segmenter.segment(image, EXPRESSIONS[:1], budget=96, prune_text="expression")
    assert not torch.equal(bare.kept[0], tiny_segmenter.segment(image, EXPRESSIONS[:1], budget=96).kept[0])


def test_methods_are_selectable_and_deterministic(tiny_segmenter, image):
    for method in ("random", "grid", "litelvlm"):
        a = tiny_segmenter.segment(image, EXPRESSIONS[:2], budget=64, method=method)
        b = tiny_segmenter.segment(image, EXPRESSIONS[:2], budget=64, method=method)
        assert a.method == method and all(torch.equal(x, y) for x, y in zip(a.kept, b.kept))
        assert np.array_equal(a.masks, b.masks)


def test_bad_inputs_get_clear_errors(tiny_segmenter, image):
    with pytest.raises(ValueError, match="no expressions"):
        tiny_segmenter.segment(image, [])
    with pytest.raises(ValueError, match="uint8"):
        tiny_segmenter.segment(image.astype(np.float32), EXPRESSIONS)
    with pytest.raises(ValueError, match="out of range"):
        tiny_segmenter.segment(image, EXPRESSIONS, budget=577)
    with pytest.raises(ValueError, match="multi_turn"):
        tiny_segmenter.segment(image, EXPRESSIONS, budget=64, conversation="multi_turn")
    with pytest.raises(ValueError, match="exactly one"):
        tiny_segmenter.segment(image, EXPRESSIONS[:1], answers=["no mask here"])


def test_first_tidy_layout_still_loads(tmp_path, tiny_segmenter, image):
    """litelvlm's first tiny layout (safetensors, one dtype, added_tokens_decoder, no inv_freq) keeps loading."""
    dirs = make_tiny_glamm(tmp_path, layout="transformers5", num_shards=3)
    assert (dirs["glamm"] / "model.safetensors.index.json").exists()
    other = GLaMMSegmenter.from_pretrained(dirs["glamm"], vision_tower=dirs["clip"])
    assert other.model.load_summary.ignored_buffers == []
    torch.testing.assert_close(other.model.llm.model.embed_tokens.weight, tiny_segmenter.model.llm.model.embed_tokens.weight)
    result = other.segment(image, EXPRESSIONS[:1], budget=64)
    assert result.masks.shape == (1, 150, 210)


def _rewrite_without(src, dst, drop=(), add=None):
    shutil.copytree(src, dst)
    ckpt = CheckpointDir(dst)
    state = ckpt.load([k for k in ckpt.keys() if k not in drop])
    state.update(add or {})
    for f in list(dst.glob("pytorch_model*.bin*")) + list(dst.glob("model*.safetensors*")):
        f.unlink()
    write_sharded(state, dst, weight_format="bin")
    return dst


def test_missing_and_unknown_keys_are_named(tmp_path, tiny_glamm_dirs):
    clip = tiny_glamm_dirs["clip"]
    broken = _rewrite_without(tiny_glamm_dirs["glamm"], tmp_path / "missing", drop=("model.layers.1.mlp.up_proj.weight",))
    with pytest.raises(ValueError, match=r"model\.layers\.1\.mlp\.up_proj\.weight"):
        GLaMMSegmenter.from_pretrained(broken, vision_tower=clip)
    extra = _rewrite_without(tiny_glamm_dirs["glamm"], tmp_path / "extra", add={"model.mystery.weight": torch.zeros(2)})
    with pytest.raises(ValueError, match=r"model\.mystery\.weight"):
        GLaMMSegmenter.from_pretrained(extra, vision_tower=clip)
    ghost = _rewrite_without(tiny_glamm_dirs["glamm"], tmp_path / "ghost",
                             add={"model.layers.7.self_attn.rotary_emb.inv_freq": torch.ones(8)})
    with pytest.raises(ValueError, match=r"model\.layers\.7\.self_attn\.rotary_emb\.inv_freq"):
        GLaMMSegmenter.from_pretrained(ghost, vision_tower=clip)
    with pytest.raises(FileNotFoundError, match="GLaMM checkpoint directory not found"):
        GLaMMSegmenter.from_pretrained(tmp_path / "nowhere", vision_tower=clip)
    with pytest.raises(FileNotFoundError, match="not a GLaMM checkpoint directory"):
        GLaMMSegmenter.from_pretrained(clip.parent, vision_tower=clip)


def test_rotary_buffers_that_contradict_the_config_are_refused(tmp_path, tiny_glamm_dirs):
    """Saved inv_freq of rope_theta 500000 against a config without rope_theta (10000 applies)."""
    wrong = 1.0 / (500000.0 ** (torch.arange(0, 16, 2).float() / 16))
    bad = _rewrite_without(tiny_glamm_dirs["glamm"], tmp_path / "theta", add={"model.layers.1.self_attn.rotary_emb.inv_freq": wrong})
    with pytest.raises(ValueError, match=r"model\.layers\.1\.self_attn\.rotary_emb\.inv_freq.*rope_theta"):
        GLaMMSegmenter.from_pretrained(bad, vision_tower=tiny_glamm_dirs["clip"])


def test_a_llama_written_by_transformers_431_loads_and_matches_its_hidden_states(tmp_path):
    """tests/fixtures/llama_transformers431: written by transformers 4.31.0's save_pretrained (make_fixture.py
    there), with 4.31's own fp32 hidden states on a fixed input. Spliced into a tiny GLaMM folder, it loads
    without edits (its inv_freq keys, no rope_theta) and litelvlm's LLaMA reproduces 4.31's states."""
    from pathlib import Path

    from litelvlm.glamm.model import GLaMM

    fixture = Path(__file__).parent / "fixtures" / "llama_transformers431"
    theirs = CheckpointDir(fixture)
    assert "model.layers.1.self_attn.rotary_emb.inv_freq" in theirs.keys()
    glamm = make_tiny_glamm(tmp_path)["glamm"]
    ours = CheckpointDir(glamm)
    state = ours.load([k for k in ours.keys() if not k.startswith(("model.embed_tokens", "model.layers", "model.norm", "lm_head"))])
    state.update(theirs.load(theirs.keys()))
    for f in glamm.glob("pytorch_model*"):
        f.unlink()
    write_sharded(state, glamm, weight_format="bin")
    model = GLaMM.from_checkpoint(glamm)
    assert len(model.load_summary.ignored_buffers) == 2
    probe = torch.load(fixture / "probe.pt")
    with torch.no_grad():
        hidden = model.llm.model(inputs_embeds=probe["emb"]).last_hidden_state
    torch.testing.assert_close(hidden, probe["hidden"], rtol=1e-4, atol=2e-5)
