"""The RefCOCO harness end to end on the tiny GLaMM checkpoint (no fake segmenter)."""

import json

import pytest

from eval.refseg.cli import main
from eval.refseg.synthetic import write_synthetic_refer


@pytest.mark.parametrize("protocol", ["all", "glamm"])
def test_model_run_on_tiny_checkpoint(tmp_path, tiny_glamm_dirs, protocol):
    data = write_synthetic_refer(tmp_path / "data")
    results = tmp_path / "results"
    argv = ["--version", str(tiny_glamm_dirs["glamm"]), "--vision-tower", str(tiny_glamm_dirs["clip"]),
            "--dataset_dir", str(data.dataset_dir), "--refer_seg_data", "refcoco|val", "--results_path", str(results),
            "--num_retain_tokens", "64", "--protocol", protocol, "--limit", "2"]
    assert main(argv) == 0
    entry = json.loads((results / "stats.json").read_text())[-1]
    assert entry["dataset"] == "refcoco" and entry["split"] == "val" and entry["budget"] == 64
    assert entry["method"] == "litelvlm" and entry["n_images"] == 2 and entry["n_expressions"] >= 2
    assert 0.0 <= entry["ciou"] <= 1.0 and 0.0 <= entry["giou"] <= 1.0
    # resuming a finished run recomputes nothing and reports the same numbers
    assert main(argv + ["--resume"]) == 0
    again = json.loads((results / "stats.json").read_text())[-1]
    assert (again["ciou"], again["giou"], again["n_expressions"]) == (entry["ciou"], entry["giou"], entry["n_expressions"])
