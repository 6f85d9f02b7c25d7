"""Loading refuses bad checkpoint files in one line naming the file, before any model is built: unparsable or
deeply nested JSON, garbage tokenizer files, pickled code in CLIP weights, config sizes beyond the released
architectures' bounds, non-finite epsilons and RoPE values, and shard indexes that point out of the folder."""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from litelvlm.checkpoint import CheckpointDir
from litelvlm.cli import main
from litelvlm.config_bounds import LLAMA_7B, PHI3_MINI, check_clip_config, check_llm_config
from litelvlm.demo import sample_image_path
from litelvlm.jsonfile import read_json_object
from video.io import write_mp4

DEEP_JSON = "[" * 100_000 + "]" * 100_000


class _Payload:
    """Unpickling this would call ``print``: a stand-in for code hidden in a weights file."""

    def __reduce__(self):
        return (print, ("payload ran",))


def _builder_never_reached(*args, **kwargs):
    raise AssertionError("a model was built although its config is bad")


@pytest.fixture
def no_builds(monkeypatch):
    """Building an LLM fails the test: a bad config must be refused before."""
    monkeypatch.setattr("litelvlm.glamm.model.build_llm", _builder_never_reached)
    monkeypatch.setattr("video.model.build_llm", _builder_never_reached)


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _edit_json(path: Path, edit) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def _segment_argv(tmp_path, glamm, clip):
    return ["segment", "--image", str(sample_image_path()), "--text", "the red car", "--budget", "64", "--glamm", str(glamm),
            "--vision-tower", str(clip), "--out", str(tmp_path / "out")]


def _video_argv(tmp_path, kwargs, checkpoint=None, video_tower=None):
    video = write_mp4(np.random.default_rng(0).integers(0, 256, (4, 32, 40, 3), dtype=np.uint8), tmp_path / "c.mp4", fps=4)
    return ["segment-video", "--video", str(video), "--text", "the dog", "--budget", "81", "--answer", "Sure, [SEG].",
            "--checkpoint", str(checkpoint or kwargs["checkpoint"]), "--vision-tower", str(kwargs["vision_tower"]),
            "--video-tower", str(video_tower or kwargs["video_tower"]), "--out", str(tmp_path / "out")]


def _one_line_naming(capsys, command: str, *words: str) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err + captured.out, captured.err
    assert lines[0].startswith(f"litelvlm {command}: error: "), lines[0]
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


# ------------------------------------------------------------------- files the CLI refuses in one line (item 5)
def _nested_index(glamm, clip):
    (glamm / "pytorch_model.bin.index.json").write_text(DEEP_JSON)
    return glamm / "pytorch_model.bin.index.json", ["too deeply", "re-download"]


def _nested_config(glamm, clip):
    (glamm / "config.json").write_text(DEEP_JSON)
    return glamm / "config.json", ["too deeply", "re-download"]


def _nested_clip_config(glamm, clip):
    (clip / "config.json").write_text(DEEP_JSON)
    return clip / "config.json", ["too deeply", "re-download"]


def _config_is_a_list(glamm, clip):
    (glamm / "config.json").write_text("[1, 2]")
    return glamm / "config.json", ["JSON array, not an object"]


def _garbage_tokenizer_model(glamm, clip):
    (glamm / "tokenizer.model").write_bytes(np.random.default_rng(0).bytes(512))
    return glamm / "tokenizer.model", ["not a sentencepiece model", "re-download"]


def _garbage_tokenizer_json(glamm, clip):
    (clip / "tokenizer.json").write_text("<html>404: Not Found</html>\n")
    return clip / "tokenizer.json", ["not valid JSON", "re-download"]


def _tokenizer_json_of_wrong_shape(glamm, clip):
    (clip / "tokenizer.json").write_text('{"model": 5}')
    return clip, ["CLIP tokenizer", "tokenizer.json", "re-download"]


def _added_token_id_not_a_number(glamm, clip):
    (glamm / "added_tokens.json").write_text('{"[SEG]": "x"}')
    return glamm / "added_tokens.json", ["token id 'x'", "re-download"]


def _pickled_code_in_clip_weights(glamm, clip):
    (clip / "model.safetensors").unlink()
    torch.save({"weight": _Payload()}, clip / "pytorch_model.bin")
    return clip / "pytorch_model.bin", ["refused", "Python global print", "could run code"]


def _pickled_code_in_a_glamm_shard(glamm, clip):
    torch.save({"weight": _Payload()}, glamm / "pytorch_model-00002-of-00002.bin")
    return glamm / "pytorch_model-00002-of-00002.bin", ["refused", "Python global print"]


FILE_CASES = [_nested_index, _nested_config, _nested_clip_config, _config_is_a_list, _garbage_tokenizer_model,
              _garbage_tokenizer_json, _tokenizer_json_of_wrong_shape, _added_token_id_not_a_number,
              _pickled_code_in_clip_weights]


@pytest.mark.parametrize("damage", FILE_CASES, ids=[f.__name__.strip("_") for f in FILE_CASES])
def test_bad_checkpoint_files_are_one_line_naming_the_file(damage, tiny_glamm_dirs, tmp_path, capsys, no_builds):
    glamm, clip = _copy(tiny_glamm_dirs["glamm"], tmp_path / "glamm"), _copy(tiny_glamm_dirs["clip"], tmp_path / "clip")
    file, words = damage(glamm, clip)
    assert main(_segment_argv(tmp_path, glamm, clip)) == 2
    _one_line_naming(capsys, "segment", str(file), *words)
    assert not (tmp_path / "out" / "result.json").exists()


@pytest.mark.parametrize("damage", [_pickled_code_in_clip_weights, _pickled_code_in_a_glamm_shard])
def test_pickled_code_is_refused_unrun(damage, tiny_glamm_dirs, tmp_path, capsys):
    """A shard is read when its tensors are needed (after the meta-device build): refused there, never run."""
    glamm, clip = _copy(tiny_glamm_dirs["glamm"], tmp_path / "glamm"), _copy(tiny_glamm_dirs["clip"], tmp_path / "clip")
    file, words = damage(glamm, clip)
    assert main(_segment_argv(tmp_path, glamm, clip)) == 2
    _one_line_naming(capsys, "segment", str(file), *words)
    assert "payload ran" not in capsys.readouterr().out


@pytest.mark.parametrize("damage, words", [
    (lambda ckpt: (ckpt / "config.json").write_text(DEEP_JSON), ["config.json", "too deeply"]),
    (lambda ckpt: (ckpt / "tokenizer.model").write_bytes(b"\x00garbage" * 40), ["tokenizer.model", "not a sentencepiece model"]),
    (lambda ckpt: (ckpt / "generation_config.json").write_text("{"), ["generation_config.json", "not valid JSON"]),
    (lambda ckpt: _edit_json(ckpt / "config.json", lambda c: c.update(num_hidden_layers=10_000_000)),
     ["config.json", "num_hidden_layers 10000000", "Phi-3-mini"]),
    (lambda ckpt: _edit_json(ckpt / "config.json", lambda c: c.update(rms_norm_eps=float("nan"))),
     ["config.json", "rms_norm_eps nan"]),
], ids=["nested-config", "garbage-tokenizer-model", "bad-generation-config", "layers-1e7", "eps-nan"])
def test_bad_video_checkpoint_files_are_one_line(damage, words, tiny_videoglamm_kwargs, tmp_path, capsys, no_builds):
    checkpoint = _copy(tiny_videoglamm_kwargs["checkpoint"], tmp_path / "videoglamm")
    damage(checkpoint)
    assert main(_video_argv(tmp_path, tiny_videoglamm_kwargs, checkpoint)) == 2
    _one_line_naming(capsys, "segment-video", str(checkpoint), *words)


def test_internvideo2_with_a_stray_deep_block_is_refused_naming_the_file(tiny_videoglamm_kwargs, tmp_path, capsys, monkeypatch):
    from video.internvideo2 import encoder

    checkpoint = torch.load(tiny_videoglamm_kwargs["video_tower"], weights_only=True)
    state = checkpoint["module"]
    key = next(k for k in state if ".blocks.0." in k)
    state[key.replace(".blocks.0.", ".blocks.10000000.")] = state[key]
    torch.save(checkpoint, tmp_path / "deep.pt")
    monkeypatch.setattr(encoder.InternVideo2VisionEncoder, "__init__", _builder_never_reached)
    assert main(_video_argv(tmp_path, tiny_videoglamm_kwargs, video_tower=tmp_path / "deep.pt")) == 2
    _one_line_naming(capsys, "segment-video", str(tmp_path / "deep.pt"), "depth 10000001", "1 to 320")


# ------------------------------------------------------------------------- configs bounded before a build (6, 7)
@pytest.mark.parametrize("edit, words", [
    (lambda c: c.update(num_hidden_layers=10_000_000), ["num_hidden_layers 10000000", "1 to 256", "LLaMA-7B"]),
    (lambda c: c.update(hidden_size=10**9), ["hidden_size 1000000000", "LLaMA-7B"]),
    (lambda c: c.update(vocab_size=10**9), ["vocab_size 1000000000"]),
    (lambda c: c.update(num_attention_heads=100_000), ["num_attention_heads 100000"]),
    (lambda c: c.update(intermediate_size=10**8), ["intermediate_size 100000000"]),
    (lambda c: c.update(num_hidden_layers="2"), ["num_hidden_layers '2'", "integer"]),
    (lambda c: c.update(num_hidden_layers=0), ["num_hidden_layers 0"]),
    (lambda c: c.update(rms_norm_eps=float("nan")), ["rms_norm_eps nan", "finite"]),
    (lambda c: c.update(rms_norm_eps=-1e-6), ["rms_norm_eps -1e-06"]),
    (lambda c: c.update(rope_theta=float("inf")), ["rope_theta inf", "finite positive"]),
    (lambda c: c.update(rope_theta=0), ["rope_theta 0"]),
    (lambda c: c.update(rope_scaling={"type": "linear", "factor": float("nan")}), ["rope_scaling.factor"]),
    (lambda c: c.update(num_attention_heads=3), ["num_attention_heads 3 does not divide hidden_size 64"]),
    (lambda c: c.update(mm_vision_select_layer=10**6), ["mm_vision_select_layer 1000000"]),
], ids=["layers", "hidden", "vocab", "heads", "mlp", "string", "zero", "eps-nan", "eps-negative", "theta-inf", "theta-zero",
        "scaling-nan", "heads-divide", "select-layer"])
def test_glamm_config_out_of_bounds_is_refused_before_the_builder(edit, words, tiny_glamm_dirs, tmp_path, capsys, no_builds):
    glamm = _copy(tiny_glamm_dirs["glamm"], tmp_path / "glamm")
    _edit_json(glamm / "config.json", edit)
    assert main(_segment_argv(tmp_path, glamm, tiny_glamm_dirs["clip"])) == 2
    _one_line_naming(capsys, "segment", str(glamm / "config.json"), *words)


@pytest.mark.parametrize("tower, field, value", [("vision_config", "num_hidden_layers", 10_000_000),
                                                 ("vision_config", "image_size", 2688), ("text_config", "vocab_size", 10**9),
                                                 ("vision_config", "layer_norm_eps", float("nan"))])
def test_clip_config_out_of_bounds_is_refused_before_any_model_loads(tower, field, value, tiny_glamm_dirs, tmp_path, capsys,
                                                                      monkeypatch):
    from litelvlm.glamm.model import GLaMM

    monkeypatch.setattr(GLaMM, "from_checkpoint", _builder_never_reached)  # the CLIP check comes before GLaMM loads
    clip = _copy(tiny_glamm_dirs["clip"], tmp_path / "clip")
    _edit_json(clip / "config.json", lambda c: c[tower].update({field: value}))
    assert main(_segment_argv(tmp_path, tiny_glamm_dirs["glamm"], clip)) == 2
    _one_line_naming(capsys, "segment", str(clip / "config.json"), tower, field)


def test_released_configs_are_within_bounds():
    llama = {"vocab_size": 32007, "hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
             "num_attention_heads": 32, "num_key_value_heads": 32, "max_position_embeddings": 4096, "rms_norm_eps": 1e-6,
             "rope_scaling": None}
    check_llm_config(llama, LLAMA_7B, "GLaMM-RefSeg/config.json")
    phi3_128k = {"vocab_size": 32064, "hidden_size": 3072, "intermediate_size": 8192, "num_hidden_layers": 32,
                 "num_attention_heads": 32, "num_key_value_heads": 32, "max_position_embeddings": 131072,
                 "original_max_position_embeddings": 4096, "sliding_window": 262144, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
                 "rope_scaling": {"type": "longrope", "long_factor": [1.08] * 48, "short_factor": [1.0] * 48},
                 "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attention_dropout": 0.0}
    check_llm_config(phi3_128k, PHI3_MINI, "Phi-3-mini-128k/config.json")
    clip_l = {"projection_dim": 768, "vision_config": {"hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24,
              "num_attention_heads": 16, "image_size": 336, "patch_size": 14, "layer_norm_eps": 1e-5},
              "text_config": {"vocab_size": 49408, "hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
                              "num_attention_heads": 12, "max_position_embeddings": 77}}
    check_clip_config(clip_l, "clip-vit-large-patch14-336/config.json")
    with pytest.raises(ValueError, match=r"long_factor"):
        check_llm_config(dict(phi3_128k, rope_scaling={"type": "longrope", "long_factor": [1.0, float("inf")]}), PHI3_MINI, "c")
    with pytest.raises(ValueError, match=r"resid_pdrop"):
        check_llm_config(dict(phi3_128k, resid_pdrop=float("nan")), PHI3_MINI, "c")


def test_json_reader_names_every_failure(tmp_path):
    cases = {"deep.json": (DEEP_JSON, "too deeply"), "bad.json": ('{"a": ', "not valid JSON"), "list.json": ("[]", "JSON array"),
             "latin.json": (None, "not UTF-8")}
    for name, (text, words) in cases.items():
        path = tmp_path / name
        path.write_bytes(b'{"a": "\xff"}') if text is None else path.write_text(text)
        with pytest.raises(ValueError, match=words) as info:
            read_json_object(path, "some config")
        assert str(path) in str(info.value) and "\n" not in str(info.value)


# ---------------------------------------------------------------------------- shard indexes stay in their folder (7)
def _tiny_sharded(folder: Path) -> Path:
    from litelvlm.testing import write_sharded

    folder.mkdir()
    write_sharded({"a.weight": torch.ones(2, 3), "b.weight": torch.zeros(4)}, folder, weight_format="bin")
    return folder / "pytorch_model.bin.index.json"


def _point_shard(index: Path, target: str, only: str | None = None) -> None:
    """Make the index name ``target`` for every tensor (``only``: for those of the shard ``only``)."""
    _edit_json(index, lambda d: d.update(weight_map={k: target if only in (None, v) else v for k, v in d["weight_map"].items()}))


@pytest.mark.parametrize("target", ["../outside.bin", "ABSOLUTE", "sub/../../outside.bin"])
def test_shard_index_naming_files_outside_the_folder_is_refused(target, tmp_path):
    index = _tiny_sharded(tmp_path / "ckpt")
    shard = next(p for p in index.parent.glob("*.bin"))
    shutil.copy(shard, tmp_path / "outside.bin")
    (index.parent / "link.bin").symlink_to(tmp_path / "outside.bin")
    target = str(tmp_path / "outside.bin") if target == "ABSOLUTE" else target
    _point_shard(index, target)
    with pytest.raises(ValueError, match="not a file inside") as info:
        CheckpointDir(index.parent)
    assert str(index) in str(info.value) and repr(target) in str(info.value)


def test_shard_links_are_followed_inside_the_folder_to_another_disk_and_into_the_hub_cache_blobs(tmp_path):
    index = _tiny_sharded(tmp_path / "plain")
    shard = json.loads(index.read_text())["weight_map"]["a.weight"]
    (index.parent / "alias.bin").symlink_to(shard)  # a link that stays in the folder
    _point_shard(index, "alias.bin", only=shard)
    assert CheckpointDir(index.parent).load(["a.weight", "b.weight"])["a.weight"].shape == (2, 3)

    elsewhere = tmp_path / "other_disk"  # weights kept elsewhere, linked in by the folder's owner: followed
    elsewhere.mkdir()
    shutil.move(str(index.parent / shard), elsewhere / shard)
    (index.parent / shard).symlink_to(elsewhere / shard)
    assert CheckpointDir(index.parent).load(["a.weight", "b.weight"])["a.weight"].shape == (2, 3)

    repo = tmp_path / "hub" / "models--o--n"  # huggingface_hub's cache: snapshot files are links into ../../blobs
    snapshot, blobs = repo / "snapshots" / "abc123", repo / "blobs"
    snapshot.mkdir(parents=True)
    blobs.mkdir()
    for file in _tiny_sharded(tmp_path / "src").parent.iterdir():
        shutil.copy(file, blobs / f"blob-{file.name}")
        (snapshot / file.name).symlink_to(os.path.relpath(blobs / f"blob-{file.name}", snapshot))
    assert CheckpointDir(snapshot).load(["a.weight", "b.weight"])["b.weight"].shape == (4,)
