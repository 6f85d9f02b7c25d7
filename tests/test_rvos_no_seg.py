"""An answer without [SEG], per benchmark, as the preset's ``no_seg`` says (eval/rvos/no_seg.py): the released MeViS /
Ref-YouTube-VOS script writes nothing for it, the released Ref-DAVIS17 script stops (refusal of the video here),
litelvlm's default writes empty masks. The official MeViS scorer gives the missing prediction 0 where an empty one
scores 1 on frames whose ground truth is empty."""

import io
import json
import zipfile

import numpy as np
import pytest
from PIL import Image

from eval.common.records import read_jsonl
from eval.common.stats import load_stats
from eval.rvos import MevisDataset, RefDavis17Dataset, score_expressions
from eval.rvos.cli import main
from eval.rvos.model import check_segment_result
from eval.rvos.no_seg import NoSegRefusal, refuse_without_seg, writes_masks
from eval.rvos.predictions import write_mask_sequence
from eval.rvos.synthetic import (SyntheticRVOSConfig, write_synthetic_mevis, write_synthetic_ref_davis17,
                                 write_synthetic_ref_ytvos)
from video.preset import PRESET_DIR, load_preset

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools under numpy 2

FACTORY = "eval.rvos.synthetic_segmenter:SyntheticVideoSegmenter"
TINY = SyntheticRVOSConfig(num_videos=1, num_frames=4, height=20, width=28, num_objects=2, seed=3)


def _sure_preset(tmp_path, base: str) -> str:
    """``base`` (released / default) with the teacher-forced answer "Sure.": the tiny VideoGLaMM never emits [SEG]."""
    path = tmp_path / f"{base}_sure.yaml"
    text = (PRESET_DIR / f"{base}.yaml").read_text()
    assert text.count("  answer: null") == 1
    path.write_text(text.replace("  answer: null", '  answer: "Sure."'))
    return str(path)


def _tiny_argv(benchmark, data, results, kwargs, preset, *extra):
    return ["--benchmark", benchmark, "--dataset_dir", str(data), "--results_path", str(results),
            "--version", str(kwargs["checkpoint"]), "--vision-tower", str(kwargs["vision_tower"]),
            "--video-tower", str(kwargs["video_tower"]), "--num_retain_tokens", "81", "--preset", preset,
            "--device", "cpu", *extra]


def _records(results):
    return [r for p in sorted((results / "records").glob("*.jsonl")) for r in read_jsonl(p)[0]]


def test_the_rule_is_preset_data_per_benchmark():
    assert [load_preset("released", b).no_seg for b in ("davis", "ytvos", "mevis")] == ["refuse", "skip", "skip"]
    assert load_preset("released").no_seg == "skip"
    assert [load_preset("default", b).no_seg for b in (None, "davis", "ytvos", "mevis")] == ["empty"] * 4


def test_a_bad_rule_is_one_line_before_any_model(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text((PRESET_DIR / "default.yaml").read_text().replace("no_seg: empty", "no_seg: drop"))
    with pytest.raises(ValueError, match=r"no_seg must be one of \['empty', 'skip', 'refuse'\], got 'drop'"):
        load_preset(bad)
    bad.write_text((PRESET_DIR / "default.yaml").read_text().replace("benchmarks: {}", "benchmarks: {davis: {no_seg: fail}}"))
    assert load_preset(bad, "mevis").no_seg == "empty"
    with pytest.raises(ValueError, match="no_seg must be one of"):
        load_preset(bad, "davis")
    write_synthetic_ref_davis17(tmp_path / "d", SyntheticRVOSConfig(num_videos=1, num_frames=2))
    argv = ["--benchmark", "davis", "--dataset_dir", str(tmp_path / "d"), "--results_path", str(tmp_path / "r"),
            "--version", "ckpt", "--segmenter-factory", FACTORY, "--preset", str(bad)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no_seg must be one of" in err[0] and "Traceback" not in err[0]


# ---------------------------------------------------------------- MeViS: skip (released) vs empty (litelvlm)


def test_mevis_writes_nothing_without_seg_and_the_scorer_tells_missing_from_empty(tmp_path, tiny_videoglamm_kwargs):
    synth = write_synthetic_mevis(tmp_path / "mevis", TINY)
    # the last object leaves in the final frame: expression "1" has empty ground truth there
    assert not synth.oracle_masks("video00", "1")[-1].any() and synth.oracle_masks("video00", "1")[0].any()
    runs = {}
    for base in ("released", "default"):
        results = tmp_path / base
        assert main(_tiny_argv("mevis", synth.root, results, tiny_videoglamm_kwargs, _sure_preset(tmp_path, base))) == 0
        (entry,) = load_stats(results)
        details = json.loads((results / "scores" / f"{entry['run_id']}.json").read_text())["expressions"]
        runs[base] = entry, {d["exp_id"]: d for d in details}, results / "predictions" / entry["run_id"]
        records = _records(results)
        assert [r["status"] for r in records] == ["no_seg"] * 3 and all(r["clips_without_seg"] == [0] for r in records)
        assert entry["n_no_seg"] == 3 and entry["no_seg_expressions"] == ["video00/0", "video00/1", "video00/2"]
        assert {r["masks_written"] for r in records} == {base == "default"}
    released, default = runs["released"], runs["default"]
    assert released[0]["no_seg_rule"] == "skip" and default[0]["no_seg_rule"] == "empty"
    # released: no mask file, no expression folder, no video folder; each expression scores 0 as a missing video
    assert released[2].is_dir() and not any(released[2].iterdir())
    assert released[0]["missing"] == {"videos": 1, "expressions": 0, "frames": 0} and released[0]["J&F"] == 0.0
    assert all((d["J"], d["F"], d["missing"]) == (0.0, 0.0, "video") for d in released[1].values())
    # litelvlm: empty PNGs for every frame; on the frame with empty ground truth they score J = F = 1
    pngs = sorted(default[2].rglob("*.png"))
    assert len(pngs) == 3 * TINY.num_frames and not any(np.asarray(Image.open(p)).any() for p in pngs)
    assert default[1]["1"]["J"] == default[1]["1"]["F"] == pytest.approx(1 / TINY.num_frames)
    assert default[0]["missing"] == {"videos": 0, "expressions": 0, "frames": 0}


def test_official_mevis_scoring_of_a_missing_and_an_empty_prediction_differs_where_gt_is_empty(tmp_path):
    """Expression 1 with empty ground truth on every frame: empty masks score J = F = 1 (both empty), a missing
    prediction (tools/eval_mevis.py: no video folder) J = F = 0."""
    synth = write_synthetic_mevis(tmp_path / "m", SyntheticRVOSConfig(num_videos=1, num_frames=3, num_objects=2, seed=3))
    split = synth.root / "valid_u"
    meta = json.loads((split / "meta_expressions.json").read_text())["videos"]
    mask_dict = json.loads((split / "mask_dict.json").read_text())
    for anno in meta["video00"]["expressions"]["1"]["anno_id"]:
        mask_dict[str(anno)] = [None] * len(mask_dict[str(anno)])
    (split / "mask_dict.json").write_text(json.dumps(mask_dict))
    ds = MevisDataset(synth.root)
    for s in ds.samples():
        shape = ds.load_gt_masks(s).shape
        assert s.exp_id != "1" or shape[0] == 3 and not ds.load_gt_masks(s).any()
        write_mask_sequence(tmp_path / "empty", s.video_id, s.exp_id, s.frames, np.zeros(shape, dtype=bool))
    (tmp_path / "missing").mkdir()
    pick = lambda out: next((d["J"], d["F"]) for d in out["expressions"] if d["exp_id"] == "1")  # noqa: E731
    assert pick(score_expressions(ds, tmp_path / "empty")) == (1.0, 1.0)
    assert pick(score_expressions(ds, tmp_path / "missing", allow_missing=True)) == (0.0, 0.0)


# ---------------------------------------------------------------- Ref-YouTube-VOS / MeViS valid: the zip


@pytest.mark.parametrize("benchmark, top", [("ytvos", "Annotations/"), ("mevis", "")])
def test_submission_zip_leaves_out_the_folder_of_an_expression_without_seg(tmp_path, benchmark, top):
    cfg = SyntheticRVOSConfig(num_videos=3, num_frames=3, height=14, width=18, frame_step=5, num_objects=2, seed=4)
    if benchmark == "ytvos":
        write_synthetic_ref_ytvos(tmp_path / "data", cfg, num_test_videos=1)
    else:
        write_synthetic_mevis(tmp_path / "data", cfg, split="valid")
    results = tmp_path / "res"
    argv = ["--benchmark", benchmark, "--dataset_dir", str(tmp_path / "data"), "--split", "valid", "--results_path",
            str(results), "--version", "ckpt", "--segmenter-factory", FACTORY, "--num_retain_tokens", "196"]
    assert main(argv) == 0
    (entry,) = load_stats(results)
    records = _records(results)
    without = {(r["video"], r["exp_id"]) for r in records if not r["has_seg"]}
    assert without and len(without) < len(records) and entry["n_no_seg"] == len(without) and entry["no_seg_rule"] == "skip"
    with zipfile.ZipFile(entry["submission"]) as zf:
        names = zf.namelist()
        assert all(set(np.unique(np.asarray(Image.open(io.BytesIO(zf.read(n)))))) <= {0, 255} for n in names)
    folders = {tuple(name[len(top):].split("/")[:2]) for name in names}
    assert folders == {(r["video"], r["exp_id"]) for r in records} - without
    assert len(names) == cfg.num_frames * len(folders)


# ---------------------------------------------------------------- Ref-DAVIS17: refuse (released) vs empty (litelvlm)


def test_davis_refuses_a_video_without_seg_in_one_line_and_ends_non_zero(tmp_path, tiny_videoglamm_kwargs, capsys):
    write_synthetic_ref_davis17(tmp_path / "davis", SyntheticRVOSConfig(num_videos=1, num_frames=3, num_objects=1, seed=5))
    results = tmp_path / "released"
    assert main(_tiny_argv("davis", tmp_path / "davis", results, tiny_videoglamm_kwargs, _sure_preset(tmp_path, "released"))) == 1
    err = capsys.readouterr().err
    refusal = [line for line in err.splitlines() if "without [SEG]" in line]
    assert refusal[0].startswith("video video00: expression 0 ('") and "clip 1 of 1 (and 3 more expression(s)" in refusal[0]
    assert "no_seg: refuse" in refusal[0] and "KeyError" in refusal[0] and "Traceback" not in err
    assert "error: 4 of 4 expressions failed in 1 video(s)" in err
    records = _records(results)
    assert [r["status"] for r in records] == ["failed"] * 4 and all(r["clips_without_seg"] == [0] for r in records)
    assert all(r["error"] == r["traceback"] == refusal[0] for r in records)
    assert not list((results / "predictions").rglob("*.png")) and not load_stats(results)
    # litelvlm's default: empty masks for the same answers, scored
    default = tmp_path / "default"
    assert main(_tiny_argv("davis", tmp_path / "davis", default, tiny_videoglamm_kwargs, _sure_preset(tmp_path, "default"))) == 0
    (entry,) = load_stats(default)
    assert entry["n_no_seg"] == 4 and entry["n_failed"] == 0 and entry["no_seg_rule"] == "empty"
    assert len(list((default / "predictions").rglob("*.png"))) == 4 * 3


def test_one_clip_without_seg_refuses_the_video_though_another_clip_has_one(tiny_video_segmenter, tmp_path):
    """The released Ref-DAVIS17 loop reads video_segments[0][0] of every 64-frame clip: a clip without [SEG] stops it."""
    from litelvlm.testing.llm import scripted_head

    seg = tiny_video_segmenter
    frames = np.random.default_rng(0).integers(0, 256, size=(6, 24, 32, 3), dtype=np.uint8)
    # clip 1: "[SEG]" then EOS; clip 2: EOS at once
    with scripted_head(seg.model.llm, [seg.seg_token_id, min(seg.eos_token_ids)] + [min(seg.eos_token_ids)]):
        result = seg.segment(frames, ["the dog"], budget=81, clip_length=4, max_new_tokens=4)
    assert result.has_seg == [True] and result.clip_has_seg == [[True, False]]
    assert result.masks[0, 4:].sum() == 0  # the second clip's frames: empty
    write_synthetic_ref_davis17(tmp_path / "d", SyntheticRVOSConfig(num_videos=1, num_frames=6, num_objects=1))
    sample = next(RefDavis17Dataset(tmp_path / "d").samples())
    pred = check_segment_result(result, 1, (6, 24, 32, 3), "video00")
    assert pred.clips_without_seg(0) == [1]
    with pytest.raises(NoSegRefusal, match=r"clip 2 of 2; no_seg: refuse") as refused:
        refuse_without_seg("refuse", "video00", [sample], pred)
    assert refused.value.clips_without_seg == {sample.exp_id: [1]}
    for rule in ("skip", "empty"):
        refuse_without_seg(rule, "video00", [sample], pred)  # no refusal
        assert writes_masks(rule, pred, 0)  # skip leaves out an expression with no [SEG] at all, not this one
