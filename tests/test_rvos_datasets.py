"""RVOS dataset readers on synthetic data in the real MeViS / Ref-YouTube-VOS / Ref-DAVIS17 layouts."""

import json

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from eval.rvos import (
    MevisDataset,
    RefDavis17Dataset,
    RefYtvosDataset,
    open_rvos_dataset,
    read_frames,
)
from eval.rvos.synthetic import (
    SyntheticRVOSConfig,
    write_synthetic_mevis,
    write_synthetic_ref_davis17,
    write_synthetic_ref_ytvos,
)

CFG = SyntheticRVOSConfig(num_videos=2, num_frames=4, height=20, width=28, num_objects=2, seed=3)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools under numpy 2
def test_mevis_samples_and_gt_union(tmp_path):
    synth = write_synthetic_mevis(tmp_path / "mevis", CFG)
    ds = MevisDataset(tmp_path / "mevis", "valid_u")
    meta = json.loads((tmp_path / "mevis/valid_u/meta_expressions.json").read_text())["videos"]
    mask_dict = json.loads((tmp_path / "mevis/valid_u/mask_dict.json").read_text())
    samples = list(ds.samples())
    assert ds.has_gt and len(ds) == len(samples) == sum(len(v["expressions"]) for v in meta.values())
    assert any(entry is None for track in mask_dict.values() for entry in track)  # a null frame exists
    for s in samples:
        exp = meta[s.video_id]["expressions"][s.exp_id]
        assert s.expression == exp["exp"] and list(s.obj_ids) == exp["obj_id"]
        assert list(s.anno_ids) == [str(a) for a in exp["anno_id"]]
        assert list(s.frames) == meta[s.video_id]["frames"]
        assert all(p.is_file() for p in s.frame_paths())
        expected = np.zeros((len(s.frames), CFG.height, CFG.width), dtype=bool)
        for a in exp["anno_id"]:
            for i, rle in enumerate(mask_dict[str(a)]):
                if rle is not None:
                    expected[i] |= mask_utils.decode(rle) > 0
        gt = ds.load_gt_masks(s)
        np.testing.assert_array_equal(gt, expected)
        np.testing.assert_array_equal(gt, synth.oracle_masks(s.video_id, s.exp_id))
    frames = read_frames(samples[0])
    assert len(frames) == CFG.num_frames and frames[0].shape == (CFG.height, CFG.width, 3)


def test_mevis_valid_has_no_gt(tmp_path):
    write_synthetic_mevis(tmp_path / "m", CFG, split="valid")
    ds = open_rvos_dataset("mevis", tmp_path / "m", "valid")
    assert not ds.has_gt
    with pytest.raises(FileNotFoundError, match="mask_dict.json"):
        ds.load_gt_masks(next(ds.samples()))


def test_ref_ytvos_layout_drops_test_videos(tmp_path):
    write_synthetic_ref_ytvos(tmp_path / "yt", SyntheticRVOSConfig(num_frames=3, frame_step=5), num_test_videos=2)
    ds = RefYtvosDataset(tmp_path / "yt")
    assert ds.video_ids() == ["video00", "video01"] and len(ds) == 4
    sample = next(ds.samples())
    assert sample.frames == ("00000", "00005", "00010") and sample.obj_ids == ()
    assert sample.frame_dir == tmp_path / "yt/valid/JPEGImages/video00"
    with pytest.raises(ValueError, match="no public ground truth"):
        ds.load_gt_masks(sample)
    assert len(RefYtvosDataset(tmp_path / "yt", exclude_test_videos=False).video_ids()) == 4
    (tmp_path / "yt/meta_expressions/test/meta_expressions.json").unlink()
    with pytest.raises(FileNotFoundError, match="meta_expressions/test/meta_expressions.json"):
        RefYtvosDataset(tmp_path / "yt")


def test_ref_davis_annotators_and_gt(tmp_path):
    synth = write_synthetic_ref_davis17(tmp_path / "d", CFG)
    ds = RefDavis17Dataset(tmp_path / "d")
    assert len(ds) == CFG.num_videos * CFG.num_objects * 4
    for vid in ds.video_ids():
        labels = ds.load_label_maps(vid)
        assert labels.shape == (CFG.num_frames, CFG.height, CFG.width) and (labels == 255).any()
        with Image.open(tmp_path / f"d/valid/Annotations/{vid}/00000.png") as img:
            assert img.mode == "P"
        for a in range(4):
            group = ds.annotator_samples(vid, a)
            assert [s.object_index for s in group] == list(range(CFG.num_objects))
            assert [s.exp_id for s in group] == [str(4 * k + a) for k in range(CFG.num_objects)]
            for s in group:
                assert s.obj_ids == (s.object_index + 1,)
                np.testing.assert_array_equal(ds.load_gt_masks(s), labels == s.obj_ids[0])
                np.testing.assert_array_equal(ds.load_gt_masks(s), synth.oracle_masks(vid, s.exp_id) & (labels != 255))


def test_ref_davis_needs_four_expressions_per_object(tmp_path):
    write_synthetic_ref_davis17(tmp_path / "d", CFG)
    path = tmp_path / "d/meta_expressions/valid/meta_expressions.json"
    meta = json.loads(path.read_text())
    meta["videos"]["video00"]["expressions"].pop("0")
    path.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="4 per object"):
        RefDavis17Dataset(tmp_path / "d")


def test_missing_files_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "nowhere")):
        MevisDataset(tmp_path / "nowhere")
    write_synthetic_mevis(tmp_path / "m", CFG)
    with pytest.raises(FileNotFoundError, match="valid/meta_expressions.json"):
        MevisDataset(tmp_path / "m", "valid")
    write_synthetic_ref_davis17(tmp_path / "d", CFG)
    (tmp_path / "d/valid/Annotations/video01/00002.png").unlink()
    ds = RefDavis17Dataset(tmp_path / "d")
    with pytest.raises(FileNotFoundError, match="video01/00002.png"):
        ds.load_label_maps("video01")
    (tmp_path / "d/valid/JPEGImages/video00/00001.jpg").unlink()
    with pytest.raises(FileNotFoundError, match="video00/00001.jpg"):
        read_frames(next(ds.samples()))
    with pytest.raises(ValueError, match="unknown RVOS dataset"):
        open_rvos_dataset("refcoco", tmp_path)
