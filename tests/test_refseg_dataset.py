"""REFER-format reading, COCO mask decoding, and the all / glamm protocols on synthetic datasets."""

import json
import pickle

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from eval.refseg.dataset import load_refer_split, parse_refer_seg_data, refer_files, split_matches
from eval.refseg.masks import mask_to_rle, rle_to_mask, segmentation_to_counts, segmentation_to_mask
from eval.refseg.protocols import ANSWER_LIST, SEG_QUESTIONS, build_tasks
from eval.refseg.synthetic import write_synthetic_refer


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_synthetic_refer(tmp_path_factory.mktemp("refer"), datasets=("refcoco", "refcoco+", "refcocog"))


def _raw(data, dataset):
    refs_path, inst_path, _ = refer_files(data.dataset_dir, dataset)
    with open(refs_path, "rb") as handle:
        refs = pickle.load(handle)
    return refs, json.loads(inst_path.read_text())


def _runs_to_mask(counts, h, w):
    """Uncompressed COCO RLE by hand: alternating 0/1 runs over the column-major pixel order."""
    flat = np.concatenate([np.full(c, k % 2, dtype=bool) for k, c in enumerate(counts)])
    return flat.reshape((w, h)).T


def _independent_mask(seg, h, w):
    if isinstance(seg, list):
        if not seg:
            return np.zeros((h, w), bool)
        parts = [mask_utils.decode(mask_utils.frPyObjects([poly], h, w))[..., 0] for poly in seg]
        return np.any(np.stack(parts), axis=0)
    if isinstance(seg["counts"], list):
        return _runs_to_mask(seg["counts"], h, w)
    return mask_utils.decode({"size": seg["size"], "counts": seg["counts"].encode()}).astype(bool)


def test_every_annotation_kind_decodes_like_an_independent_decoder(data):
    _, inst = _raw(data, "refcoco")
    sizes = {img["id"]: (img["height"], img["width"]) for img in inst["images"]}
    kinds = set()
    for ann in inst["annotations"]:
        h, w = sizes[ann["image_id"]]
        seg = ann["segmentation"]
        kinds.add("polygons" if isinstance(seg, list) else type(seg["counts"]).__name__)
        got = segmentation_to_mask(seg, h, w)
        assert got.dtype == bool and got.shape == (h, w)
        np.testing.assert_array_equal(got, _independent_mask(seg, h, w))
    assert kinds == {"polygons", "list", "str"}
    assert any(ann["segmentation"] == [] for ann in inst["annotations"])


def _released_counts(seg, h, w):
    """RefCOCO_Segm_ds.py's ground truth: the decoded polygons summed along the part axis, cast to uint8."""
    if isinstance(seg, dict):
        return _independent_mask(seg, h, w).astype(np.uint8)
    if len(seg) == 0:
        return np.zeros((h, w)).astype(np.uint8)
    m = mask_utils.decode(mask_utils.frPyObjects(seg, h, w))
    m = np.sum(m, axis=2)
    return m.astype(np.uint8)


def test_summed_polygon_ground_truth_is_the_released_one(tmp_path):
    data = write_synthetic_refer(tmp_path, datasets=("refcoco",), overlapping_polygons=True, seed=1)
    refs, inst = _raw(data, "refcoco")
    sizes = {img["id"]: (img["height"], img["width"]) for img in inst["images"]}
    values, differing = set(), 0
    for ann in inst["annotations"]:
        h, w = sizes[ann["image_id"]]
        seg = ann["segmentation"]
        counts = segmentation_to_counts(seg, h, w)
        assert counts.dtype == np.uint8 and counts.shape == (h, w)
        np.testing.assert_array_equal(counts, _released_counts(seg, h, w))
        union = segmentation_to_mask(seg, h, w)
        np.testing.assert_array_equal(union, _independent_mask(seg, h, w))
        values |= set(np.unique(counts).tolist())
        differing += int(((counts == 1) != union).any())
    assert {0, 1, 2, 3, 255} <= values  # overlaps, the ignore label, and 256 parts wrapped to 0
    assert differing >= 3
    split = load_refer_split(data.dataset_dir, "refcoco", "val")
    for image in split.images:
        for expr in image.expressions:
            seg = split.annotations[expr.ann_id]["segmentation"]
            np.testing.assert_array_equal(split.gt_counts(expr, image),
                                          _released_counts(seg, image.height, image.width))
            np.testing.assert_array_equal(split.gt_mask(expr, image),
                                          _independent_mask(seg, image.height, image.width))


def test_rle_round_trip_and_size_check():
    rng = np.random.default_rng(0)
    for _ in range(10):
        mask = rng.random((int(rng.integers(1, 20)), int(rng.integers(1, 20)))) < 0.4
        rle = mask_to_rle(mask)
        assert isinstance(rle["counts"], str)
        np.testing.assert_array_equal(rle_to_mask(rle, *mask.shape), mask)
        json.dumps(rle)
    with pytest.raises(ValueError, match="does not match"):
        rle_to_mask(mask_to_rle(np.zeros((3, 4))), 4, 3)
    with pytest.raises(ValueError, match="'size'"):
        rle_to_mask({"counts": "abc"})


@pytest.mark.parametrize("spec", ["refcoco|val", "refcoco|testA", "refcoco|testB", "refcoco+|val",
                                  "refcocog|val", "refcocog|test"])
def test_split_holds_exactly_the_refs_sentences(data, spec):
    dataset, split = parse_refer_seg_data(spec)
    refs, inst = _raw(data, dataset)
    expected = {(r["ref_id"], s["sent_id"], r["image_id"], r["ann_id"], s["sent"])
                for r in refs if r["split"] == split for s in r["sentences"]}
    loaded = load_refer_split(data.dataset_dir, dataset, split)
    got = {(e.ref_id, e.sent_id, e.image_id, e.ann_id, e.sentence) for img in loaded.images for e in img.expressions}
    assert got == expected and loaded.n_expressions == len(expected)
    ids = [img.image_id for img in loaded.images]
    assert ids == sorted(ids) == data.datasets[dataset][split]
    image = loaded.images[0]
    pixels = loaded.load_image(image)
    assert pixels.dtype == np.uint8 and pixels.shape == (image.height, image.width, 3)
    reference = np.asarray(Image.open(loaded.image_path(image)).convert("RGB")).astype(int)
    assert np.abs(pixels.astype(int) - reference).mean() < 3  # same JPEG, OpenCV vs PIL decoder


def test_refer_split_rules(tmp_path):
    assert split_matches("testA", "testA") and split_matches("testAB", "testA") and split_matches("testAB", "testB")
    assert not split_matches("testB", "testA") and not split_matches("train", "testA")
    assert split_matches("testB", "test") and split_matches("test", "test") and not split_matches("val", "test")
    assert split_matches("val", "val") and not split_matches("valX", "val")
    data = write_synthetic_refer(tmp_path, datasets=("refcoco",), images_per_split=1)
    refs_path, _, _ = refer_files(tmp_path, "refcoco")
    with open(refs_path, "rb") as handle:
        refs = pickle.load(handle)
    refs[0]["split"] = "testAB"
    with open(refs_path, "wb") as handle:
        pickle.dump(refs, handle)
    in_a = {e.ref_id for img in load_refer_split(tmp_path, "refcoco", "testA").images for e in img.expressions}
    in_b = {e.ref_id for img in load_refer_split(tmp_path, "refcoco", "testB").images for e in img.expressions}
    assert refs[0]["ref_id"] in in_a and refs[0]["ref_id"] in in_b
    assert data.datasets["refcoco"]


def test_clear_errors_for_bad_inputs(data, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"refs file not found: .*refcoco\+/refs\(unc\)\.p"):
        load_refer_split(tmp_path, "refcoco+", "val")
    (tmp_path / "Refer_Segm" / "refcocog").mkdir(parents=True)
    (tmp_path / "Refer_Segm" / "refcocog" / "refs(umd).p").write_bytes(pickle.dumps([]))
    with pytest.raises(FileNotFoundError, match="instances.json not found"):
        load_refer_split(tmp_path, "refcocog", "val")
    with pytest.raises(ValueError, match=r"split 'testA' of refcocog has no refs .*\['test', 'train', 'val'\]"):
        load_refer_split(data.dataset_dir, "refcocog", "testA")
    with pytest.raises(ValueError, match="refcoco\\|val"):
        parse_refer_seg_data("refcoco-val")
    with pytest.raises(ValueError, match="unknown dataset 'refclef'"):
        parse_refer_seg_data("refclef|val")
    with pytest.raises(ValueError, match="unknown split"):
        parse_refer_seg_data("refcoco|dev")
    (tmp_path / "Refer_Segm" / "refcocog" / "instances.json").write_text('{"images": [], "annotations": []}')
    (tmp_path / "Refer_Segm" / "refcocog" / "refs(umd).p").write_bytes(pickle.dumps([{"ref_id": 1, "split": "val"}]))
    with pytest.raises(ValueError, match=r"refs\(umd\).p holds a ref without the REFER field 'image_id'"):
        load_refer_split(tmp_path, "refcocog", "val")
    split = load_refer_split(data.dataset_dir, "refcoco", "val")
    missing = split.images[0]
    missing.file_name = "nope.jpg"
    with pytest.raises(FileNotFoundError, match="nope.jpg"):
        split.load_image(missing)


def test_all_protocol_uses_every_sentence_and_the_fixed_template(data):
    split = load_refer_split(data.dataset_dir, "refcocog", "val")
    tasks = build_tasks(split, "all")
    assert [t.image.image_id for t in tasks] == [img.image_id for img in split.images]
    for task, image in zip(tasks, split.images):
        assert list(task.expressions) == image.expressions
        assert task.questions == tuple(f"Can you segment the {e.sentence.strip().lower()} in this image?"
                                       for e in image.expressions)
        assert set(task.answers) == {"Sure, it is [SEG]."}
        assert (task.prune_scope, task.conversation) == ("expression", "separate")
    assert build_tasks(split, "all", limit=1) == tasks[:1]
    with pytest.raises(ValueError, match="--limit"):
        build_tasks(split, "all", limit=0)
    with pytest.raises(ValueError, match="unknown protocol"):
        build_tasks(split, "lisa")


def _selection(tasks):
    return [(e.key, q, a) for t in tasks for e, q, a in zip(t.expressions, t.questions, t.answers)]


def test_glamm_protocol_samples_like_the_release_and_repeats_per_seed(data):
    split = load_refer_split(data.dataset_dir, "refcoco", "val")
    tasks = build_tasks(split, "glamm", seed=0)
    templates = {t.format(class_name="X") for t in SEG_QUESTIONS}
    for task, image in zip(tasks, split.images):
        assert len(task.expressions) == min(3, len(image.expressions))
        assert len(set(task.expressions)) == len(task.expressions)
        assert set(task.expressions) <= set(image.expressions)
        for expr, question, answer in zip(task.expressions, task.questions, task.answers):
            assert question.replace(expr.sentence.strip().lower(), "X", 1) in templates
            assert answer in ANSWER_LIST
        assert (task.prune_scope, task.conversation) == ("image", "multi_turn")
    assert _selection(build_tasks(split, "glamm", seed=0)) == _selection(tasks)
    assert _selection(build_tasks(split, "glamm", seed=0, limit=1)) == _selection(tasks[:1])
    assert _selection(build_tasks(split, "glamm", seed=1)) != _selection(tasks)
    # the draws vary across seeds the way random sampling should: many different selections over 40 seeds
    assert len({tuple(_selection(build_tasks(split, "glamm", seed=s))) for s in range(40)}) > 20
