"""``litelvlm segment`` on the tiny GLaMM checkpoint."""

import json

import numpy as np
from PIL import Image

from litelvlm.cli import main
from litelvlm.demo import sample_image_path


def test_segment_writes_masks_overlay_and_kept_maps(tmp_path, tiny_glamm_dirs):
    out = tmp_path / "seg"
    code = main(["segment", "--image", str(sample_image_path()), "--text", "the red car", "--text", "the man",
                 "--budget", "64", "--glamm", str(tiny_glamm_dirs["glamm"]), "--vision-tower", str(tiny_glamm_dirs["clip"]),
                 "--out", str(out)])
    assert code == 0
    report = json.loads((out / "result.json").read_text())
    size = Image.open(sample_image_path()).size
    assert report["num_visual_tokens"] == 64 and len(report["expressions"]) == 2
    for row in report["expressions"]:
        mask = np.asarray(Image.open(row["mask"]))
        assert mask.shape == (size[1], size[0]) and set(np.unique(mask)) <= {0, 255}
        assert len(row["kept"]) == 64
        kept_map = np.asarray(Image.open(row["kept_map"]))  # the 336x336 CLIP view, titled, with a legend
        assert kept_map.shape[2] == 3 and kept_map.shape[0] > 336 and kept_map.shape[1] >= 336
    overlay = np.asarray(Image.open(report["overlay"]))  # the image, titled, with a legend
    assert overlay.shape[2] == 3 and overlay.shape[0] > size[1] and overlay.shape[1] >= size[0]


def test_segment_errors_are_one_line(tmp_path, tiny_glamm_dirs, capsys):
    bad = tmp_path / "bad.jpg"
    bad.write_text("not an image")
    cases = [
        (["--image", str(tmp_path / "none.jpg")], "image not found"),
        (["--image", str(bad)], "cannot read image"),
    ]
    for extra, message in cases:
        argv = ["segment", *extra, "--text", "x", "--glamm", str(tiny_glamm_dirs["glamm"]), "--out", str(tmp_path / "o")]
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0]
    argv = ["segment", "--image", str(sample_image_path()), "--text", "x", "--glamm", str(tiny_glamm_dirs["clip"]), "--out", str(tmp_path / "o")]
    assert main(argv) == 2
    assert "not a GLaMM checkpoint directory" in capsys.readouterr().err


# ------------------------------------------------------------------------------------- many images, RLE
import io  # noqa: E402

import pytest  # noqa: E402

from litelvlm.glamm import GLaMMSegmenter  # noqa: E402


class _Terminal(io.StringIO):
    """A stderr that says it is a terminal, so the progress bar draws."""

    def isatty(self):
        return True


@pytest.fixture
def counted(monkeypatch):
    """Counts model loads and segment calls (the real ones run); ``fail_at``: the call number that raises."""
    counts = {"loads": 0, "segments": 0, "fail_at": None}
    load, segment = GLaMMSegmenter.from_pretrained.__func__, GLaMMSegmenter.segment

    def counting_load(cls, *args, **kwargs):
        counts["loads"] += 1
        return load(cls, *args, **kwargs)

    def counting_segment(self, *args, **kwargs):
        counts["segments"] += 1
        if counts["segments"] == counts["fail_at"]:
            raise RuntimeError("the machine went down")
        return segment(self, *args, **kwargs)

    monkeypatch.setattr(GLaMMSegmenter, "from_pretrained", classmethod(counting_load))
    monkeypatch.setattr(GLaMMSegmenter, "segment", counting_segment)
    return counts


def _images(folder, n):
    folder.mkdir()
    rng = np.random.default_rng(5)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, size=(20 + i, 30, 3), dtype=np.uint8)).save(folder / f"img{i}.png")
    (folder / "notes.txt").write_text("not an image: ignored")
    return folder


def _many(tiny_glamm_dirs, source, out, *extra):
    return ["segment", "--images", str(source), "--budget", "16", "--checkpoint", str(tiny_glamm_dirs["glamm"]),
            "--vision-tower", str(tiny_glamm_dirs["clip"]), "--out", str(out), *extra]


def test_images_folder_loads_once_writes_per_image_and_resumes(tmp_path, tiny_glamm_dirs, counted, capsys, monkeypatch):
    folder, out = _images(tmp_path / "imgs", 3), tmp_path / "out"
    argv = _many(tiny_glamm_dirs, folder, out, "--text", "the dog", "--text", "the cat")
    counted["fail_at"] = 3  # the third image fails: the first two are on disk
    with pytest.raises(RuntimeError, match="went down"):
        main(argv)
    assert counted["loads"] == 1 and counted["segments"] == 3
    assert sorted(p.parent.name for p in out.glob("*/result.json")) == ["img0_png", "img1_png"]
    capsys.readouterr()

    counted.update(loads=0, segments=0, fail_at=None)
    terminal = _Terminal()
    with monkeypatch.context() as patch:
        patch.setattr("sys.stderr", terminal)
        assert main(argv) == 0
    assert counted == {"loads": 1, "segments": 1, "fail_at": None}  # only the unfinished image
    assert "litelvlm segment" in terminal.getvalue() and "3/3" in terminal.getvalue()
    assert "segmented 1 of 3 image(s) (2 finished before" in capsys.readouterr().out
    report = json.loads((out / "img2_png" / "result.json").read_text())
    assert report["image"] == str(folder / "img2.png") and [r["text"] for r in report["expressions"]] == ["the dog", "the cat"]
    assert np.asarray(Image.open(report["expressions"][1]["mask"])).shape == (22, 30)

    counted.update(loads=0, segments=0)
    assert main(argv) == 0  # all done: not even a model load
    assert counted["loads"] == 0 and "nothing to do: all 3 image(s) are done in" in capsys.readouterr().out
    assert main(_many(tiny_glamm_dirs, folder, out, "--text", "the dog", "--text", "the cat", "--format", "rle")) == 2
    err = capsys.readouterr().err
    assert "holds the results of another run (format 'png' there, 'rle' now)" in err and counted["loads"] == 0


def test_images_list_json_gives_each_image_its_expressions(tmp_path, tiny_glamm_dirs, counted, capsys):
    folder = _images(tmp_path / "imgs", 2)
    listing = folder / "list.json"
    listing.write_text(json.dumps([{"image": "img1.png", "expressions": ["the dog"]},
                                   {"image": str(folder / "img0.png"), "expressions": ["a", "b", "c"]}]))
    out = tmp_path / "out"
    assert main(_many(tiny_glamm_dirs, listing, out)) == 0 and counted["loads"] == 1
    first = json.loads((out / "00001_img1_png" / "result.json").read_text())
    second = json.loads((out / "00002_img0_png" / "result.json").read_text())
    assert first["image"] == str(folder / "img1.png") and [r["text"] for r in first["expressions"]] == ["the dog"]
    assert len(second["expressions"]) == 3 and second["num_visual_tokens"] == 16


@pytest.mark.parametrize("entries, words", [
    ({"image": "a.png"}, "must hold a JSON list of"),
    ([], "must hold a JSON list of"),
    (["img0.png"], "entry 1 of 1 is a JSON str, not an object"),
    ([{"image": "img0.png", "expressions": ["x"]}, {"image": "img1.png", "expression": ["x"]}],
     "entry 2 of 2 has the keys ['expression', 'image']"),
    ([{"image": "img0.png", "expressions": ["x"], "box": [1]}], "entry 1 of 1 has the keys"),
    ([{"image": 3, "expressions": ["x"]}], "entry 1 of 1: 'image' must be a path"),
    ([{"image": "img0.png", "expressions": ["x"]}, {"image": "gone.png", "expressions": ["x"]}], "entry 2 of 2: image not found"),
    ([{"image": "img0.png", "expressions": "the dog"}], "entry 1 of 1 (img0.png): 'expressions' must be a list"),
    ([{"image": "img0.png", "expressions": []}], "entry 1 of 1 (img0.png): 'expressions': give at least one"),
    ([{"image": "img0.png", "expressions": ["ok", "  "]}], "entry 1 of 1 (img0.png): 'expressions' must not be empty"),
], ids=["object", "empty", "string-entry", "misspelt-key", "extra-key", "image-not-str", "image-missing",
        "expressions-str", "expressions-empty", "expression-blank"])
def test_bad_list_entries_are_one_line_before_the_model(entries, words, tmp_path, tiny_glamm_dirs, counted, capsys):
    folder = _images(tmp_path / "imgs", 2)
    listing = folder / "list.json"
    listing.write_text(json.dumps(entries))
    out = tmp_path / "out"
    assert main(_many(tiny_glamm_dirs, listing, out)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0] and str(listing) in err[0], err
    assert counted["loads"] == 0 and not out.exists()


def test_images_options_are_checked_before_the_model(tmp_path, tiny_glamm_dirs, counted, capsys):
    folder = _images(tmp_path / "imgs", 1)
    listing = folder / "list.json"
    listing.write_text(json.dumps([{"image": "img0.png", "expressions": ["x"]}]))
    (tmp_path / "empty").mkdir()
    for argv, words in [(_many(tiny_glamm_dirs, folder, tmp_path / "o"), "--text (the expressions of every image"),
                        (_many(tiny_glamm_dirs, listing, tmp_path / "o", "--text", "x"), "drop --text"),
                        (_many(tiny_glamm_dirs, tmp_path / "empty", tmp_path / "o", "--text", "x"), "holds no image files"),
                        (_many(tiny_glamm_dirs, folder / "img0.png", tmp_path / "o", "--text", "x"), "a folder of images or a LIST.json"),
                        (_many(tiny_glamm_dirs, tmp_path / "nolist.json", tmp_path / "o"), "list file not found")]:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and words in err[0], err
    assert counted["loads"] == 0 and not (tmp_path / "o").exists()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools decode under numpy 2
def test_rle_masks_decode_to_the_png_masks_exactly(tmp_path, tiny_glamm_dirs):
    from pycocotools import mask as mask_utils

    out = tmp_path / "both"
    argv = ["segment", "--image", str(sample_image_path()), "--text", "the red car", "--text", "the man", "--budget", "64",
            "--checkpoint", str(tiny_glamm_dirs["glamm"]), "--vision-tower", str(tiny_glamm_dirs["clip"]), "--out", str(out),
            "--format", "both"]
    assert main(argv) == 0
    report = json.loads((out / "result.json").read_text())
    assert report["format"] == "both"
    for row in report["expressions"]:
        png = np.asarray(Image.open(row["mask"])) > 0
        rle = row["rle"]
        assert isinstance(rle["counts"], str) and rle["size"] == list(png.shape)
        decoded = mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode("utf-8")})
        assert np.array_equal(decoded.astype(bool), png) and png.sum() == row["mask_pixels"]
    assert main([*argv[:-2], "--format", "rle", "--out", str(tmp_path / "rle")]) == 0
    only = json.loads((tmp_path / "rle" / "result.json").read_text())
    assert not list((tmp_path / "rle").glob("mask_*.png")) and all("mask" not in r for r in only["expressions"])
    assert [r["rle"] for r in only["expressions"]] == [r["rle"] for r in report["expressions"]]
