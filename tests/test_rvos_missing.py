"""--allow-missing scores missing predictions as the official scorers do: MeViS J = F = 0 per incomplete
expression (never empty masks), Ref-DAVIS17 empty proposals for missing expressions / frames and a refusal for a
video without any prediction (davis2017-evaluation exits on missing sequences)."""

import io
import json
import shutil
import zipfile

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from eval.common.stats import load_stats
from eval.rvos import MevisDataset, MissingPredictionsError, RefDavis17Dataset, score_expressions, score_ref_davis17
from eval.rvos.cli import main
from eval.rvos.predictions import write_mask_sequence
from eval.rvos.synthetic import (SyntheticRVOSConfig, write_synthetic_mevis, write_synthetic_predictions,
                                 write_synthetic_ref_davis17, write_synthetic_ref_ytvos)
from test_rvos_scoring import noisy_predictions, read_pred, ref_davis, ref_f, ref_j, ref_mevis

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools under numpy 2

# 4 frames: the last object (expression "1" in MeViS) leaves in the final frame, whose GT is then empty
CFG = SyntheticRVOSConfig(num_videos=2, num_frames=4, height=21, width=30, num_objects=2, seed=11)
DAVIS_CFG = SyntheticRVOSConfig(num_videos=2, num_frames=3, height=21, width=30, num_objects=2, seed=5)


def by_key(out):
    return {(d["video"], d["exp_id"]): d for d in out["expressions"]}


def blank_gt_track(split_dir, video, exp_id):
    """Make the GT of ``video/exp_id`` empty on every frame (its mask_dict tracks become all None)."""
    meta = json.loads((split_dir / "meta_expressions.json").read_text())["videos"]
    mask_dict = json.loads((split_dir / "mask_dict.json").read_text())
    for a in meta[video]["expressions"][exp_id]["anno_id"]:
        mask_dict[str(a)] = [None] * len(mask_dict[str(a)])
    (split_dir / "mask_dict.json").write_text(json.dumps(mask_dict))


# ---------------------------------------------------------------- MeViS


def test_mevis_missing_video_scores_zero_even_where_gt_is_empty(tmp_path):
    synth = write_synthetic_mevis(tmp_path / "mevis", CFG)
    blank_gt_track(tmp_path / "mevis/valid_u", "video01", "1")  # an empty mask would score J = F = 1 on it
    write_synthetic_predictions(synth, tmp_path / "pred")
    shutil.rmtree(tmp_path / "pred/video01")
    ds = MevisDataset(tmp_path / "mevis")
    assert not ds.load_gt_masks(next(s for s in ds.samples() if s.key == "video01/1")).any()
    out = score_expressions(ds, tmp_path / "pred", allow_missing=True)
    details = by_key(out)
    assert details[("video01", "1")]["J"] == details[("video01", "1")]["F"] == 0.0  # old rule: 1.0
    assert out["J"] == out["F"] == out["J&F"] == pytest.approx(0.5)
    for e in ("0", "1", "2"):
        d = details[("video01", e)]
        assert (d["J"], d["F"], d["J&F"], d["missing"], d["missing_frames"]) == (0.0, 0.0, 0.0, "video", 4)
        assert details[("video00", e)]["J"] == 1.0 and details[("video00", e)]["missing"] is None
    assert out["missing"] == {"videos": 1, "expressions": 0, "frames": 0}


def test_mevis_missing_expression_folder_and_frame_score_zero(tmp_path):
    synth = write_synthetic_mevis(tmp_path / "mevis", CFG)
    write_synthetic_predictions(synth, tmp_path / "pred")
    ds = MevisDataset(tmp_path / "mevis")
    last = next(s for s in ds.samples() if s.key == "video01/1")
    assert not ds.load_gt_masks(last)[-1].any()  # the frame removed below has empty GT
    shutil.rmtree(tmp_path / "pred/video00/1")
    (tmp_path / "pred/video01/1/00003.png").unlink()
    out = score_expressions(ds, tmp_path / "pred", allow_missing=True)
    details = by_key(out)
    assert (details[("video00", "1")]["J"], details[("video00", "1")]["F"]) == (0.0, 0.0)
    assert (details[("video00", "1")]["missing"], details[("video00", "1")]["missing_frames"]) == ("expression", 4)
    assert (details[("video01", "1")]["J"], details[("video01", "1")]["F"]) == (0.0, 0.0)
    assert (details[("video01", "1")]["missing"], details[("video01", "1")]["missing_frames"]) == ("frames", 1)
    others = [d for k, d in details.items() if k not in {("video00", "1"), ("video01", "1")}]
    assert all(d["J"] == d["F"] == 1.0 and d["missing"] is None for d in others)
    assert out["J"] == out["F"] == pytest.approx(4 / 6)
    assert out["missing"] == {"videos": 0, "expressions": 1, "frames": 1}


def restate_mevis_aggregation(split_dir, pred_dir):
    """Mean over expressions of frame-mean J and F; a missing video scores [0, 0] per expression (eval_mevis.py)."""
    meta = json.loads((split_dir / "meta_expressions.json").read_text())["videos"]
    mask_dict = json.loads((split_dir / "mask_dict.json").read_text())
    out = {}
    for vid, entry in meta.items():
        for exp_id, exp in entry["expressions"].items():
            if not (pred_dir / vid).is_dir():
                out[(vid, exp_id)] = (0.0, 0.0)
                continue
            jf = []
            for i, frame in enumerate(entry["frames"]):
                rles = [mask_dict[str(a)][i] for a in exp["anno_id"] if mask_dict[str(a)][i] is not None]
                pred = read_pred(pred_dir / vid / exp_id / f"{frame}.png")
                gt = np.zeros(pred.shape, dtype=bool)
                for rle in rles:
                    gt |= mask_utils.decode(rle).astype(bool)
                jf.append((ref_j(gt, pred), ref_f(gt, pred)))
            out[(vid, exp_id)] = tuple(np.mean(jf, axis=0))
    return out


def test_mevis_aggregation_with_a_missing_video_matches_a_restatement(tmp_path):
    cfg = SyntheticRVOSConfig(num_videos=3, num_frames=4, height=21, width=30, num_objects=2, seed=7)
    synth = write_synthetic_mevis(tmp_path / "mevis", cfg)
    noisy_predictions(synth, tmp_path / "pred", seed=5)
    shutil.rmtree(tmp_path / "pred/video01")
    out = score_expressions(MevisDataset(tmp_path / "mevis"), tmp_path / "pred", allow_missing=True)
    per_exp = restate_mevis_aggregation(tmp_path / "mevis/valid_u", tmp_path / "pred")
    details = by_key(out)
    assert set(details) == set(per_exp) and out["n_expressions"] == 9
    for key, (j, f) in per_exp.items():
        assert details[key]["J"] == pytest.approx(j, abs=1e-6) and details[key]["F"] == pytest.approx(f, abs=1e-6)
    j = np.mean([v[0] for v in per_exp.values()])
    f = np.mean([v[1] for v in per_exp.values()])
    assert out["J"] == pytest.approx(j, abs=1e-6) and out["F"] == pytest.approx(f, abs=1e-6)
    assert out["J&F"] == pytest.approx((j + f) / 2, abs=1e-6) and 0 < out["J&F"] < 1
    assert (out["J"], out["F"]) == pytest.approx(ref_mevis(tmp_path / "mevis/valid_u", tmp_path / "pred")[:2], abs=1e-6)


def test_mevis_cli_states_the_zero_rule(tmp_path, capsys):
    synth = write_synthetic_mevis(tmp_path / "mevis", CFG)
    write_synthetic_predictions(synth, tmp_path / "pred")
    shutil.rmtree(tmp_path / "pred/video01")
    argv = ["--benchmark", "mevis", "--dataset_dir", str(tmp_path / "mevis"), "--results_path",
            str(tmp_path / "res"), "--predictions", str(tmp_path / "pred")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "1 missing videos (e.g. video01)" in err and "--allow-missing" in err and "J = F = 0" in err
    assert main(argv + ["--allow-missing"]) == 0
    assert "J = F = 0" in capsys.readouterr().err
    (entry,) = load_stats(tmp_path / "res")
    assert entry["J"] == entry["F"] == pytest.approx(0.5) and entry["missing"]["videos"] == 1


# ---------------------------------------------------------------- Ref-DAVIS17


def write_empty(pred_dir, synth, vid, exp_id, frames=None):
    frames = synth.frames[vid] if frames is None else frames
    shape = synth.labels[vid].shape[1:]
    write_mask_sequence(pred_dir, vid, exp_id, frames, np.zeros((len(frames), *shape), dtype=bool))


def test_ref_davis_missing_expressions_and_frames_are_empty_proposals(tmp_path):
    synth = write_synthetic_ref_davis17(tmp_path / "d", DAVIS_CFG)
    ds = RefDavis17Dataset(tmp_path / "d")
    noisy_predictions(synth, tmp_path / "pred", seed=3)
    shutil.copytree(tmp_path / "pred", tmp_path / "empty")
    # video00: expression 5 (object 2, annotator 1) missing; annotator 0 entirely missing (exp 0 and 4);
    # video01: one frame of expression 2 missing
    for exp_id in ("5", "0", "4"):
        shutil.rmtree(tmp_path / "pred/video00" / exp_id)
        write_empty(tmp_path / "empty", synth, "video00", exp_id)
    (tmp_path / "pred/video01/2/00001.png").unlink()
    write_empty(tmp_path / "empty", synth, "video01", "2", frames=["00001"])
    with pytest.raises(MissingPredictionsError, match="empty proposals"):
        score_ref_davis17(ds, tmp_path / "pred")
    out = score_ref_davis17(ds, tmp_path / "pred", allow_missing=True)
    same = score_ref_davis17(ds, tmp_path / "empty")
    assert (out["J"], out["F"], out["J&F"]) == (same["J"], same["F"], same["J&F"]) and 0 < out["J&F"] < 1
    for name, setting in out["settings"].items():
        assert (setting["J"], setting["F"]) == (same["settings"][name]["J"], same["settings"][name]["F"])
    expected = ref_davis(tmp_path / "d", tmp_path / "empty")
    for a, (j, f) in enumerate(expected):
        assert out["settings"][f"anno_{a}"]["J"] == pytest.approx(j, abs=1e-6)
        assert out["settings"][f"anno_{a}"]["F"] == pytest.approx(f, abs=1e-6)
    got, ref = by_key(out), by_key(same)
    assert {k: (d["J"], d["F"], d["object_id"]) for k, d in got.items()} == \
        {k: (d["J"], d["F"], d["object_id"]) for k, d in ref.items()}
    kinds = {k: (d["missing"], d["missing_frames"]) for k, d in got.items() if d["missing"]}
    assert kinds == {("video00", "0"): ("expression", 3), ("video00", "4"): ("expression", 3),
                     ("video00", "5"): ("expression", 3), ("video01", "2"): ("frames", 1)}
    assert out["missing"] == {"videos": 0, "expressions": 3, "frames": 1}


@pytest.mark.parametrize("how", ["no video folder", "empty video folder", "no frame files"])
def test_ref_davis_video_without_any_prediction_is_refused(tmp_path, how):
    synth = write_synthetic_ref_davis17(tmp_path / "d", DAVIS_CFG)
    ds = RefDavis17Dataset(tmp_path / "d")
    write_synthetic_predictions(synth, tmp_path / "pred")
    video = tmp_path / "pred/video01"
    if how == "no video folder":
        shutil.rmtree(video)
    elif how == "empty video folder":
        shutil.rmtree(video)
        video.mkdir()
    else:
        for png in video.glob("*/*.png"):
            png.unlink()
    with pytest.raises(MissingPredictionsError):
        score_ref_davis17(ds, tmp_path / "pred")
    with pytest.raises(MissingPredictionsError) as err:
        score_ref_davis17(ds, tmp_path / "pred", allow_missing=True)
    msg = str(err.value)
    assert len(msg.splitlines()) == 1 and "video01" in msg and "video00" not in msg.replace(str(tmp_path), "")
    assert "official DAVIS-2017 scorer" in msg and "stops on missing sequences" in msg


def test_ref_davis_cli_refuses_a_video_without_predictions(tmp_path, capsys):
    synth = write_synthetic_ref_davis17(tmp_path / "d", DAVIS_CFG)
    write_synthetic_predictions(synth, tmp_path / "pred")
    shutil.rmtree(tmp_path / "pred/video00")
    argv = ["--benchmark", "davis", "--dataset_dir", str(tmp_path / "d"), "--results_path", str(tmp_path / "res"),
            "--predictions", str(tmp_path / "pred"), "--allow-missing"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: Ref-DAVIS17 cannot score 1 video(s) without any prediction")
    assert "video00" in err[-1] and "stops on missing sequences" in err[-1]
    assert not load_stats(tmp_path / "res")


# ---------------------------------------------------------------- splits without GT


def test_ytvos_zip_with_missing_predictions_says_they_are_empty_masks(tmp_path, capsys):
    cfg = SyntheticRVOSConfig(num_videos=2, num_frames=3, height=14, width=18, frame_step=5, seed=2)
    synth = write_synthetic_ref_ytvos(tmp_path / "yt", cfg, num_test_videos=1)
    write_synthetic_predictions(synth, tmp_path / "pred")
    (tmp_path / "pred/video00/0/00005.png").unlink()
    argv = ["--benchmark", "ytvos", "--dataset_dir", str(tmp_path / "yt"), "--results_path", str(tmp_path / "res"),
            "--predictions", str(tmp_path / "pred")]
    assert main(argv) == 2
    assert main(argv + ["--allow-missing"]) == 0
    assert "upload zip as empty masks" in capsys.readouterr().err
    (entry,) = load_stats(tmp_path / "res")
    assert entry["missing"]["frames"] == 1 and entry["J"] is None
    with zipfile.ZipFile(entry["submission"]) as zf:
        with Image.open(io.BytesIO(zf.read("Annotations/video00/0/00005.png"))) as img:
            assert img.size == (18, 14) and not np.asarray(img).any()
