"""Submission zips for Ref-YouTube-VOS valid and MeViS valid: layout, 0/255 values, missing items."""

import io
import zipfile

import numpy as np
import pytest
from PIL import Image

from eval.rvos import MevisDataset, MissingPredictionsError, RefDavis17Dataset, RefYtvosDataset, write_submission_zip
from eval.rvos.davis_protocol import save_label_map
from eval.rvos.synthetic import (
    SyntheticRVOSConfig,
    write_synthetic_mevis,
    write_synthetic_predictions,
    write_synthetic_ref_davis17,
    write_synthetic_ref_ytvos,
)

CFG = SyntheticRVOSConfig(num_videos=2, num_frames=3, height=14, width=18, num_objects=2, frame_step=5, seed=2)


def read_zip(path):
    with zipfile.ZipFile(path) as zf:
        return {name: np.asarray(Image.open(io.BytesIO(zf.read(name)))) for name in zf.namelist()}


def test_ytvos_zip_layout_and_values(tmp_path):
    synth = write_synthetic_ref_ytvos(tmp_path / "yt", CFG, num_test_videos=1)
    write_synthetic_predictions(synth, tmp_path / "pred", flip_prob=0.1, seed=1)
    # a palette prediction with index 3 must become 255 too
    save_label_map(tmp_path / "pred/video01/1/00005.png", np.full((14, 18), 3, np.uint8))
    out = write_submission_zip(RefYtvosDataset(tmp_path / "yt"), tmp_path / "pred", tmp_path / "sub.zip")
    entries = read_zip(tmp_path / "sub.zip")
    expected = {f"Annotations/video0{v}/{e}/{f:05d}.png" for v in range(2) for e in range(2) for f in (0, 5, 10)}
    assert set(entries) == expected and out["n_files"] == 12 and out["n_expressions"] == 4
    for name, arr in entries.items():
        assert arr.dtype == np.uint8 and arr.shape == (14, 18) and set(np.unique(arr)) <= {0, 255}
        _, vid, exp, frame = name.split("/")
        pred = np.asarray(Image.open(tmp_path / "pred" / vid / exp / frame)) != 0
        np.testing.assert_array_equal(arr == 255, pred)
    assert (entries["Annotations/video01/1/00005.png"] == 255).all()
    write_submission_zip(RefYtvosDataset(tmp_path / "yt"), tmp_path / "pred", tmp_path / "again.zip")
    assert (tmp_path / "sub.zip").read_bytes() == (tmp_path / "again.zip").read_bytes()


def test_mevis_zip_has_video_folders_at_top(tmp_path):
    synth = write_synthetic_mevis(tmp_path / "m", CFG, split="valid")
    write_synthetic_predictions(synth, tmp_path / "pred")
    ds = MevisDataset(tmp_path / "m", "valid")
    write_submission_zip(ds, tmp_path / "pred", tmp_path / "m.zip")
    names = set(read_zip(tmp_path / "m.zip"))
    assert names == {f"{s.video_id}/{s.exp_id}/{f}.png" for s in ds.samples() for f in s.frames}
    write_submission_zip(ds, tmp_path / "pred", tmp_path / "m2.zip", folder="Annotations")
    assert all(n.startswith("Annotations/video") for n in read_zip(tmp_path / "m2.zip"))


def test_missing_predictions_in_zip(tmp_path):
    synth = write_synthetic_ref_ytvos(tmp_path / "yt", CFG)
    write_synthetic_predictions(synth, tmp_path / "pred")
    (tmp_path / "pred/video00/0/00010.png").unlink()
    ds = RefYtvosDataset(tmp_path / "yt")
    with pytest.raises(MissingPredictionsError, match="video00/0/00010.png"):
        write_submission_zip(ds, tmp_path / "pred", tmp_path / "sub.zip")
    out = write_submission_zip(ds, tmp_path / "pred", tmp_path / "sub.zip", allow_missing=True)
    assert out["n_filled_empty"] == 1 and out["missing"]["frames"] == 1
    filled = read_zip(tmp_path / "sub.zip")["Annotations/video00/0/00010.png"]
    assert filled.shape == (14, 18) and not filled.any()


def test_splits_with_gt_refuse_zips(tmp_path):
    write_synthetic_mevis(tmp_path / "m", CFG)
    write_synthetic_ref_davis17(tmp_path / "d", CFG)
    with pytest.raises(ValueError, match="score it locally"):
        write_submission_zip(MevisDataset(tmp_path / "m"), tmp_path, tmp_path / "x.zip")
    with pytest.raises(ValueError, match="public GT"):
        write_submission_zip(RefDavis17Dataset(tmp_path / "d"), tmp_path, tmp_path / "x.zip")
