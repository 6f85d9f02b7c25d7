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
