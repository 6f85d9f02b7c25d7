"""Bad inputs of both harnesses (``python -m eval.refseg`` / ``python -m eval.rvos``): each is refused with exit
status 2 and ONE line on stderr naming the bad input, before the model is built (the fake segmenter factory is
never called) and before any score is written. Only the command-line entry points are used here, so the table
also runs against older versions of the harnesses."""

import json
import os
import pickle
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from eval.common.stats import load_stats
from eval.refseg.cli import main as refseg_main
from eval.refseg.synthetic import SyntheticSegmenter, write_synthetic_refer
from eval.rvos.cli import main as rvos_main
from eval.rvos.synthetic import SyntheticRVOSConfig, write_synthetic_mevis, write_synthetic_ref_davis17
from eval.rvos.synthetic_segmenter import SyntheticVideoSegmenter

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools under numpy 2

CFG = SyntheticRVOSConfig(num_videos=2, num_frames=3, height=16, width=20, num_objects=2, seed=5)


# ---------------------------------------------------------------- dataset builders and edits


def refer(tmp_path):
    """A tiny refcoco (REFER layout) under tmp_path/refer."""
    write_synthetic_refer(tmp_path / "refer", datasets=("refcoco",), images_per_split=2, seed=2)
    return tmp_path / "refer"


def refer_folder(tmp_path):
    return tmp_path / "refer" / "Refer_Segm" / "refcoco"


def val_image_names(root):
    """File names of the refcoco val images (the ones a 'refcoco|val' run reads)."""
    folder = root / "Refer_Segm" / "refcoco"
    refs = pickle.loads((folder / "refs(unc).p").read_bytes())
    ids = {r["image_id"] for r in refs if r["split"] == "val"}
    images = json.loads((folder / "instances.json").read_text())["images"]
    return sorted(i["file_name"] for i in images if i["id"] in ids)


def mevis(tmp_path):
    write_synthetic_mevis(tmp_path / "mevis", CFG)
    return tmp_path / "mevis"


def davis(tmp_path):
    write_synthetic_ref_davis17(tmp_path / "davis", CFG)
    return tmp_path / "davis"


def edit_json(path, change):
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def truncate(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def mevis_meta(root):
    return root / "valid_u" / "meta_expressions.json"


def davis_meta(root):
    return root / "meta_expressions" / "valid" / "meta_expressions.json"


class _RunsCode:
    """A pickle that runs ``touch <marker>`` when loaded with plain pickle.load."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


# ---------------------------------------------------------------- the cases


def case_refseg_results_file(tmp_path):
    root = refer(tmp_path)
    (tmp_path / "results.txt").write_text("not a folder")
    return "refseg", root, tmp_path / "results.txt"


def case_rvos_results_file(tmp_path):
    root = mevis(tmp_path)
    (tmp_path / "results.txt").write_text("not a folder")
    return "mevis", root, tmp_path / "results.txt"


def case_rvos_results_under_a_file(tmp_path):
    root = mevis(tmp_path)
    (tmp_path / "results.txt").write_text("not a folder")
    return "mevis", root, tmp_path / "results.txt" / "sub"


def case_refs_truncated(tmp_path):
    root = refer(tmp_path)
    truncate(refer_folder(tmp_path) / "refs(unc).p")
    return "refseg", root, None


def case_refs_not_a_pickle(tmp_path):
    root = refer(tmp_path)
    (refer_folder(tmp_path) / "refs(unc).p").write_text("ref_id,sent\n1,a man\n")
    return "refseg", root, None


def case_refs_running_code(tmp_path):
    root = refer(tmp_path)
    (refer_folder(tmp_path) / "refs(unc).p").write_bytes(pickle.dumps(_RunsCode(tmp_path / "pwned"), protocol=2))
    return "refseg", root, None


def case_instances_bad_json(tmp_path):
    root = refer(tmp_path)
    (refer_folder(tmp_path) / "instances.json").write_text('{"images": [\n  {"id": 1,,}\n]}')
    return "refseg", root, None


def case_refseg_missing_annotation(tmp_path):
    root = refer(tmp_path)
    refs = pickle.loads((refer_folder(tmp_path) / "refs(unc).p").read_bytes())
    val = [r for r in refs if r["split"] == "val"]
    edit_json(refer_folder(tmp_path) / "instances.json",
              lambda d: d.update(annotations=[a for a in d["annotations"] if a["id"] != val[-1]["ann_id"]]))
    return "refseg", root, None


def case_refseg_unsafe_file_name(tmp_path):
    root = refer(tmp_path)
    name = val_image_names(root)[0]

    def change(data):
        for image in data["images"]:
            if image["file_name"] == name:
                image["file_name"] = "../../" + name
    edit_json(refer_folder(tmp_path) / "instances.json", change)
    return "refseg", root, None


def case_refseg_truncated_image(tmp_path):
    root = refer(tmp_path)
    truncate(root / "Refer_Segm" / "coco_2014" / "train2014" / val_image_names(root)[0])
    return "refseg", root, None


def case_refseg_image_size(tmp_path):
    root = refer(tmp_path)
    name = val_image_names(root)[-1]

    def change(data):
        image = next(i for i in data["images"] if i["file_name"] == name)
        image["height"] += 1
        for ann in data["annotations"]:  # keep instances.json consistent: only the image file disagrees
            if ann["image_id"] == image["id"] and isinstance(ann["segmentation"], dict):
                ann["segmentation"]["size"][0] += 1
    edit_json(refer_folder(tmp_path) / "instances.json", change)
    return "refseg", root, None


def case_meta_bad_json(tmp_path):
    root = mevis(tmp_path)
    mevis_meta(root).write_text('{"videos": {\n"video00": }\n}')
    return "mevis", root, None


def case_mask_dict_bad_json(tmp_path):
    root = mevis(tmp_path)
    (root / "valid_u" / "mask_dict.json").write_text('{"0": [null,\n')
    return "mevis", root, None


def case_mask_dict_polygon(tmp_path):
    root = mevis(tmp_path)
    edit_json(root / "valid_u" / "mask_dict.json", lambda d: d["1"].__setitem__(2, [[1.0, 1.0, 9.0, 1.0, 9.0, 9.0]]))
    return "mevis", root, None


def case_mask_dict_number(tmp_path):
    root = mevis(tmp_path)
    edit_json(root / "valid_u" / "mask_dict.json", lambda d: d["0"].__setitem__(1, 7))
    return "mevis", root, None


def case_mask_dict_size(tmp_path):
    root = mevis(tmp_path)

    def change(data):
        rle = next(r for r in data["2"] if r)
        rle["size"] = [CFG.height + 4, CFG.width]
    edit_json(root / "valid_u" / "mask_dict.json", change)
    return "mevis", root, None


def case_mask_dict_missing_anno(tmp_path):
    root = mevis(tmp_path)
    edit_json(root / "valid_u" / "mask_dict.json", lambda d: d.pop("3"))
    return "mevis", root, None


def case_davis_obj_id_not_int(tmp_path):
    root = davis(tmp_path)
    edit_json(davis_meta(root), lambda d: d["videos"]["video01"]["expressions"]["5"].update(obj_id="two"))
    return "davis", root, None


def case_davis_obj_id_no_object(tmp_path):
    root = davis(tmp_path)
    edit_json(davis_meta(root), lambda d: d["videos"]["video00"]["expressions"]["6"].update(obj_id="7"))
    return "davis", root, None


def case_davis_obj_id_missing(tmp_path):
    root = davis(tmp_path)
    edit_json(davis_meta(root), lambda d: d["videos"]["video00"]["expressions"]["1"].pop("obj_id"))
    return "davis", root, None


def case_empty_expression(tmp_path):
    root = davis(tmp_path)
    edit_json(davis_meta(root), lambda d: d["videos"]["video01"]["expressions"]["2"].update(exp="   "))
    return "davis", root, None


def case_many_empty_expressions(tmp_path):
    root = mevis(tmp_path)

    def change(data):
        for vid in ("video00", "video01"):
            for exp in data["videos"][vid]["expressions"].values():
                exp["exp"] = ""
    edit_json(mevis_meta(root), change)
    return "mevis", root, None


def case_davis_missing_annotation(tmp_path):
    root = davis(tmp_path)
    (root / "valid" / "Annotations" / "video01" / "00001.png").unlink()
    return "davis", root, None


def case_davis_annotation_size(tmp_path):
    root = davis(tmp_path)
    path = root / "valid" / "Annotations" / "video00" / "00002.png"
    with Image.open(path) as img:
        small = img.crop((0, 0, CFG.width - 4, CFG.height))
        small.save(path)
    return "davis", root, None


def case_davis_truncated_annotation(tmp_path):
    root = davis(tmp_path)
    truncate(root / "valid" / "Annotations" / "video00" / "00001.png", keep=0.7)
    return "davis", root, None


def case_rvos_truncated_frame(tmp_path):
    root = mevis(tmp_path)
    truncate(root / "valid_u" / "JPEGImages" / "video01" / "00001.jpg")
    return "mevis", root, None


def case_rvos_frame_missing_its_end(tmp_path):
    root = mevis(tmp_path)
    truncate(root / "valid_u" / "JPEGImages" / "video00" / "00002.jpg", keep=0.9)  # header intact, data cut
    return "mevis", root, None


def case_rvos_missing_frame(tmp_path):
    root = davis(tmp_path)
    (root / "valid" / "JPEGImages" / "video00" / "00002.jpg").unlink()
    return "davis", root, None


def bomb_png(path, side=30000):
    """A PNG whose header says side x side 1-bit pixels (9e8 for 30000): a few hundred bytes on disk."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    rows = zlib.compress(b"\x00" * (1 + side // 8) * 8)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b""))


def amplified_refs(refs_path, copies=2000, sentences=1000):
    """A refs file whose one ref, and its one sentence, are shared references repeated ``copies`` x ``sentences``
    times (2e6 expressions from a few KB: the pickle memo stores each object once)."""
    refs = pickle.loads(refs_path.read_bytes())
    ref = next(r for r in refs if r["split"] == "val")
    ref["sentences"] = [ref["sentences"][0]] * sentences
    refs_path.write_bytes(pickle.dumps([ref] * copies, protocol=2))
    assert refs_path.stat().st_size < 20_000


def case_refs_amplified(tmp_path):
    root = refer(tmp_path)
    amplified_refs(refer_folder(tmp_path) / "refs(unc).p")
    return "refseg", root, None


def case_refs_nan_sent_id(tmp_path):
    root = refer(tmp_path)
    path = refer_folder(tmp_path) / "refs(unc).p"
    refs = pickle.loads(path.read_bytes())
    next(r for r in refs if r["split"] == "val")["sentences"][0]["sent_id"] = float("nan")
    path.write_bytes(pickle.dumps(refs, protocol=2))
    return "refseg", root, None


def case_instances_huge_id(tmp_path):
    root = refer(tmp_path)
    path = refer_folder(tmp_path) / "instances.json"
    edit_json(path, lambda d: d["images"][0].update(id=987654321))
    path.write_text(path.read_text().replace("987654321", "1e999"))
    return "refseg", root, None


def case_instances_nan_height(tmp_path):
    root = refer(tmp_path)
    name = val_image_names(root)[0]
    path = refer_folder(tmp_path) / "instances.json"
    edit_json(path, lambda d: next(i for i in d["images"] if i["file_name"] == name).update(height=float("nan")))
    return "refseg", root, None


def case_polygon_nan(tmp_path):
    root = refer(tmp_path)
    refs = pickle.loads((refer_folder(tmp_path) / "refs(unc).p").read_bytes())
    val = {r["ann_id"] for r in refs if r["split"] == "val"}

    def change(data):
        ann = next(a for a in data["annotations"] if a["id"] in val and isinstance(a["segmentation"], list)
                   and a["segmentation"])
        ann["segmentation"][0][1] = float("nan")
    edit_json(refer_folder(tmp_path) / "instances.json", change)
    return "refseg", root, None


def case_instances_deeply_nested(tmp_path):
    root = refer(tmp_path)
    (refer_folder(tmp_path) / "instances.json").write_text('{"images": ' + "[" * 100000 + "]" * 100000 + "}")
    return "refseg", root, None


def case_meta_deeply_nested(tmp_path):
    root = mevis(tmp_path)
    mevis_meta(root).write_text('{"videos": ' + "{\"a\": " * 100000 + "1" + "}" * 100000 + "}")
    return "mevis", root, None


def case_expression_id_too_long(tmp_path):
    root = mevis(tmp_path)
    edit_json(mevis_meta(root), lambda d: d["videos"]["video01"]["expressions"].update(
        {"e" * 300: d["videos"]["video01"]["expressions"].pop("1")}))
    return "mevis", root, None


def case_bomb_frame(tmp_path):
    root = mevis(tmp_path)
    bomb_png(root / "valid_u" / "JPEGImages" / "video01" / "00002.jpg")
    return "mevis", root, None


def case_bomb_coco_image(tmp_path):
    root = refer(tmp_path)
    bomb_png(root / "Refer_Segm" / "coco_2014" / "train2014" / val_image_names(root)[0])
    return "refseg", root, None


def case_bomb_davis_annotation(tmp_path):
    root = davis(tmp_path)
    bomb_png(root / "valid" / "Annotations" / "video00" / "00001.png")
    return "davis", root, None


CASES = [
    # (builder, words the single line must hold; "{root}" / "{results}" are replaced by the paths)
    (case_refseg_results_file, ["--results_path", "{results}", "is an existing file, not a folder"]),
    (case_rvos_results_file, ["--results_path", "{results}", "is an existing file, not a folder"]),
    (case_rvos_results_under_a_file, ["--results_path", "{results}", "cannot be created"]),
    (case_refs_truncated, ["refs(unc).p", "truncated"]),
    (case_refs_not_a_pickle, ["refs(unc).p", "not a readable pickle"]),
    (case_refs_running_code, ["refs(unc).p", "refused", "system", "only lists, dicts, strings and numbers"]),
    (case_instances_bad_json, ["instances.json", "not valid JSON", "line 2 column"]),
    (case_refseg_missing_annotation, ["instances.json", "is not in instances.json"]),
    (case_refseg_unsafe_file_name, ["file_name", "../../COCO_train2014_", "path separator"]),
    (case_refseg_truncated_image, ["train2014/COCO_train2014_", "truncated", "--allow-truncated-images"]),
    (case_refseg_image_size, ["instances.json says"]),
    (case_meta_bad_json, ["valid_u/meta_expressions.json", "not valid JSON", "line 2 column"]),
    (case_mask_dict_bad_json, ["valid_u/mask_dict.json", "not valid JSON", "line 2"]),
    (case_mask_dict_polygon, ["mask_dict.json", "anno_id 1, frame 2 (00002) of video video00", "polygon",
                              "COCO RLE dicts"]),
    (case_mask_dict_number, ["anno_id 0, frame 1 (00001) of video video00", "the int 7"]),
    (case_mask_dict_size, ["anno_id 2", "RLE size [20, 20] differs", "[16, 20]"]),
    (case_mask_dict_missing_anno, ["anno_id 3 of expression video01/", "missing from", "mask_dict.json"]),
    (case_davis_obj_id_not_int, ["meta_expressions.json", "video01/5", "'obj_id' 'two' is not an integer"]),
    (case_davis_obj_id_no_object, ["video00/6", "obj_id 7", "first annotation frame", "objects 1..2"]),
    (case_davis_obj_id_missing, ["video00/1", "'obj_id' is missing"]),
    (case_empty_expression, ["meta_expressions.json", "1 bad entry", "video01/2: 'exp' is empty"]),
    (case_many_empty_expressions, ["6 bad entries", "video00/0: 'exp' is empty", "; ..."]),
    (case_davis_missing_annotation, ["DAVIS annotation PNG not found", "Annotations/video01/00001.png"]),
    (case_davis_annotation_size, ["Annotations/video00/00002.png is 16x16 but the frames are 20x16"]),
    (case_davis_truncated_annotation, ["DAVIS annotation PNG", "Annotations/video00/00001.png", "is truncated"]),
    (case_rvos_truncated_frame, ["frame image", "JPEGImages/video01/00001.jpg", "is truncated"]),
    (case_rvos_frame_missing_its_end, ["frame image", "JPEGImages/video00/00002.jpg", "is truncated or corrupt",
                                        "image file is truncated"]),
    (case_rvos_missing_frame, ["frame image not found", "JPEGImages/video00/00002.jpg"]),
    (case_refs_amplified, ["refs(unc).p", "was refused", "shared references expand to more than 1,000,000 objects"]),
    (case_refs_nan_sent_id, ["refs(unc).p", "a sentence of ref", "sent_id nan, not an integer"]),
    (case_instances_huge_id, ["instances.json", "an image has the id inf, not an integer"]),
    (case_instances_nan_height, ["instances.json", "has the height nan, not an integer >= 1"]),
    (case_polygon_nan, ["instances.json", "has a polygon coordinate that is not a finite number"]),
    (case_instances_deeply_nested, ["instances.json", "nests its JSON lists / objects too deeply"]),
    (case_meta_deeply_nested, ["valid_u/meta_expressions.json", "nests its JSON lists / objects too deeply"]),
    (case_expression_id_too_long, ["meta_expressions.json", "expression id 'eeee", "is 300 bytes long",
                                   "at most 251"]),
    (case_bomb_frame, ["frame image", "JPEGImages/video01/00002.jpg", "decompression bomb"]),
    (case_bomb_coco_image, ["train2014/COCO_train2014_", "decompression bomb"]),
    (case_bomb_davis_annotation, ["DAVIS annotation PNG", "Annotations/video00/00001.png", "decompression bomb"]),
]


def _run(harness, root, results, calls):
    if harness == "refseg":
        def factory(config):
            calls.append(config)
            return SyntheticSegmenter(config)

        argv = ["--dataset_dir", str(root), "--refer_seg_data", "refcoco|val", "--results_path", str(results),
                "--version", "ckpt"]
        return refseg_main(argv, segmenter_factory=factory)

    def video_factory(config):
        calls.append(config)
        return SyntheticVideoSegmenter(config)

    argv = ["--benchmark", harness, "--dataset_dir", str(root), "--results_path", str(results), "--version", "ckpt",
            "--video-tower", "iv2.pt"]
    return rvos_main(argv, segmenter_factory=video_factory)


@pytest.mark.parametrize("build, words", CASES, ids=[c[0].__name__[5:] for c in CASES])
def test_bad_input_is_one_line_before_the_model(tmp_path, capsys, build, words):
    harness, root, results = build(tmp_path)
    results = results or tmp_path / "results"
    calls = []
    assert _run(harness, root, results, calls) == 2
    err = capsys.readouterr().err.strip()
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for word in words:
        word = word.replace("{root}", str(root)).replace("{results}", str(results))
        assert word in lines[0], (word, lines[0])
    assert calls == []  # refused before the model was built
    assert not (tmp_path / "pwned").exists()  # the crafted pickle ran nothing
    if results.is_dir():
        assert not load_stats(results)


# ---------------------------------------------------------------- what is accepted


def test_uncompressed_mevis_rle_scores_like_compressed(tmp_path):
    from pycocotools import mask as mask_utils

    synth = write_synthetic_mevis(tmp_path / "mevis", CFG)
    from eval.rvos.synthetic import write_synthetic_predictions

    write_synthetic_predictions(synth, tmp_path / "pred", flip_prob=0.2, seed=1)
    argv = ["--benchmark", "mevis", "--dataset_dir", str(tmp_path / "mevis"), "--predictions", str(tmp_path / "pred")]
    assert rvos_main(argv + ["--results_path", str(tmp_path / "a")]) == 0

    def uncompress(data):
        for track in data.values():
            for i, rle in enumerate(track):
                if rle:
                    mask = mask_utils.decode(rle).flatten(order="F").astype(np.int8)
                    edges = np.flatnonzero(np.diff(mask)) + 1
                    counts = np.diff(np.concatenate([[0], edges, [mask.size]])).tolist()
                    track[i] = {"size": rle["size"], "counts": counts if mask[0] == 0 else [0] + counts}
    edit_json(tmp_path / "mevis" / "valid_u" / "mask_dict.json", uncompress)
    assert isinstance(json.loads((tmp_path / "mevis/valid_u/mask_dict.json").read_text())["0"][0]["counts"], list)
    assert rvos_main(argv + ["--results_path", str(tmp_path / "b")]) == 0
    (first,), (second,) = load_stats(tmp_path / "a"), load_stats(tmp_path / "b")
    assert (first["J"], first["F"]) == (second["J"], second["F"]) and 0 < first["J&F"] < 1


def test_sixteen_bit_davis_annotations_are_integer_labels(tmp_path):
    from eval.rvos.synthetic import write_synthetic_predictions

    synth = write_synthetic_ref_davis17(tmp_path / "davis", CFG)
    write_synthetic_predictions(synth, tmp_path / "pred")
    for png in (tmp_path / "davis" / "valid" / "Annotations").rglob("*.png"):
        with Image.open(png) as img:
            labels = np.asarray(img).astype(np.uint16)
        Image.fromarray(labels).save(png)  # same labels, 16-bit greyscale
        with Image.open(png) as img:
            assert img.mode == "I;16"
    argv = ["--benchmark", "davis", "--dataset_dir", str(tmp_path / "davis"), "--results_path", str(tmp_path / "res"),
            "--predictions", str(tmp_path / "pred")]
    assert rvos_main(argv) == 0
    (entry,) = load_stats(tmp_path / "res")
    assert entry["J"] == entry["F"] == 1.0  # oracle predictions against the same labels read from 16-bit PNGs


def test_sixteen_bit_frames_keep_their_high_byte(tmp_path):
    from eval.rvos import MevisDataset
    from eval.rvos.runner import load_video_frames

    write_synthetic_mevis(tmp_path / "mevis", CFG)
    folder = tmp_path / "mevis" / "valid_u" / "JPEGImages" / "video00"
    grey = (np.arange(CFG.height * CFG.width, dtype=np.uint32).reshape(CFG.height, CFG.width) * 200).astype(np.uint16)
    Image.fromarray(grey).save(folder / "00001.jpg", format="PNG")  # a 16-bit PNG frame
    frames = load_video_frames(MevisDataset(tmp_path / "mevis"), "video00")
    expected = (grey >> 8).astype(np.uint8)
    assert frames.dtype == np.uint8 and frames.shape == (CFG.num_frames, CFG.height, CFG.width, 3)
    assert all(np.array_equal(frames[1][..., c], expected) for c in range(3))
    assert len(np.unique(frames[1])) > 100  # not saturated at 255


def test_refseg_truncated_image_is_decoded_in_part_on_request(tmp_path, capsys):
    root = refer(tmp_path)
    name = val_image_names(root)[0]
    truncate(root / "Refer_Segm" / "coco_2014" / "train2014" / name)
    argv = ["--dataset_dir", str(root), "--refer_seg_data", "refcoco|val", "--results_path", str(tmp_path / "res"),
            "--version", "ckpt", "--allow-truncated-images"]
    assert refseg_main(argv, segmenter_factory=SyntheticSegmenter) == 0
    err = capsys.readouterr().err
    assert f"warning: image {root / 'Refer_Segm' / 'coco_2014' / 'train2014' / name} is truncated" in err
    assert load_stats(tmp_path / "res")[0]["n_images"] == 2


def test_refseg_sixteen_bit_png_image_is_scaled_not_saturated(tmp_path):
    from eval.refseg.dataset import load_refer_split

    root = refer(tmp_path)
    split = load_refer_split(root, "refcoco", "val")
    image = split.images[0]
    rgb = np.random.default_rng(0).integers(0, 65536, size=(image.height, image.width, 3)).astype(np.uint16)
    import cv2

    cv2.imwrite(str(split.image_dir / "sixteen.png"), rgb[..., ::-1])
    image.file_name = "sixteen.png"
    pixels = split.load_image(image)
    assert pixels.dtype == np.uint8 and np.array_equal(pixels, (rgb >> 8).astype(np.uint8))
