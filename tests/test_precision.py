"""The released precision path (bf16, eager CLIP) and ``litelvlm precision``, which measures what it changes."""

import json

import numpy as np
import torch

from litelvlm.bench.precision import PAIRS, kept_token_changes, towers_on_path
from litelvlm.cli import main


def test_paths_share_weights_and_differ_only_in_dtype_and_attention(tiny_clip):
    eager = towers_on_path(tiny_clip, torch.bfloat16, "eager")
    assert eager.vision.dtype == torch.bfloat16 and eager.vision.config._attn_implementation == "eager"
    assert eager.text.config._attn_implementation == "eager" and tiny_clip.vision.dtype == torch.float32
    w = "vision_model.encoder.layers.0.self_attn.q_proj.weight"
    torch.testing.assert_close(eager.vision.state_dict()[w].float(), tiny_clip.vision.state_dict()[w].bfloat16().float())


def test_kept_token_changes_counts_set_differences(tiny_clip):
    images = [np.random.default_rng(i).integers(0, 256, (60, 80, 3), dtype=np.uint8) for i in range(3)]
    rows, errors = kept_token_changes(tiny_clip, images, ["a red car", "the man"], budgets=(64, 576))
    assert [r.budget for r in rows] == [64, 576] and errors["fp32"] == 0.0 and errors["bf16-eager"] > 0
    for row in rows:
        assert set(row.changed_mean) == {f"{a} vs {b}" for a, b in PAIRS}
        assert all(0 <= v <= row.budget for v in row.changed_max.values())
    assert all(v == 0 for v in rows[1].changed_max.values())  # all 576 kept: nothing can differ


def test_precision_cli_prints_a_titled_table_and_writes_json(tmp_path, capsys):
    out = tmp_path / "p.json"
    assert main(["precision", "--budget", "64", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "random weights" in text and "bf16-eager vs bf16-sdpa" in text and f"wrote {out}" in text
    data = json.loads(out.read_text())
    assert data["images"] == 8 and data["rows"][0]["budget"] == 64


def test_glamm_protocol_runs_bf16_with_eager_attention_as_released(tiny_glamm_dirs, tmp_path):
    from eval.refseg.config import RefSegConfig
    from eval.refseg.model import build_segmenter

    base = dict(checkpoint=str(tiny_glamm_dirs["glamm"]), vision_tower=str(tiny_glamm_dirs["clip"]), results_path=str(tmp_path), device="cpu")
    released = RefSegConfig(protocol="glamm", **base)
    assert (released.model_dtype, released.model_attn_implementation) == ("bfloat16", "eager")
    assert (RefSegConfig(**base).model_dtype, RefSegConfig(**base).model_attn_implementation) == ("auto", None)
    assert RefSegConfig(protocol="glamm", dtype="float32", attn_implementation="sdpa", **base).model_dtype == "float32"
    segmenter = build_segmenter(released)
    assert segmenter.dtype == torch.bfloat16 and segmenter.clip.vision.dtype == torch.bfloat16
    assert segmenter.clip.vision.config._attn_implementation == "eager"
    assert segmenter.model.llm.config._attn_implementation == "eager"
