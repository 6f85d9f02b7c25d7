"""The README's main job (demo) and the CLI's error handling."""

import json

import numpy as np
from PIL import Image

from litelvlm.cli import main


def test_demo_writes_kept_token_pictures(tmp_path, tiny_clip_dir):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--vision-tower", str(tiny_clip_dir), "--budget", "192", "--budget", "64",
                 "--text", "the red car", "--text", "the man"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert [b["budget"] for b in summary["budgets"]] == [192, 64]
    for row in summary["budgets"]:
        assert row["similarity_tokens"] + row["context_tokens"] == row["budget"]
        picture = np.asarray(Image.open(row["picture"]))  # the 336x336 CLIP view under a title, above a legend
        assert picture.ndim == 3 and picture.shape[2] == 3 and picture.shape[0] > 336 and picture.shape[1] >= 336


def test_demo_reports_bad_vision_tower_in_one_line(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--vision-tower", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "CLIP vision tower directory not found" in err[0]
