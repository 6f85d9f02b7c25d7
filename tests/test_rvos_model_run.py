"""The video harness end to end on the tiny VideoGLaMM checkpoint (no fake segmenter)."""

import pytest

from eval.common import load_stats
from eval.rvos.cli import main
from eval.rvos.synthetic import SyntheticRVOSConfig, write_synthetic_mevis, write_synthetic_ref_davis17
from video.preset import PRESET_DIR


def _released_short(tmp_path):
    """The released preset with 3 new tokens: its no-cache sampling loop over 512 tokens of a random model
    would take minutes on a CPU."""
    path = tmp_path / "released_short.yaml"
    path.write_text((PRESET_DIR / "released.yaml").read_text().replace("max_new_tokens: 512", "max_new_tokens: 3"))
    return str(path)


@pytest.mark.parametrize("benchmark, writer, split, preset", [("davis", write_synthetic_ref_davis17, "valid", "default"),
                                                              ("mevis", write_synthetic_mevis, "valid_u", "released_short")])
def test_model_run_on_tiny_checkpoint(tmp_path, tiny_videoglamm_kwargs, benchmark, writer, split, preset):
    writer(tmp_path / "data", SyntheticRVOSConfig(num_videos=1, num_frames=4, num_objects=1))
    results = tmp_path / "results"
    preset = _released_short(tmp_path) if preset == "released_short" else preset
    argv = ["--benchmark", benchmark, "--dataset_dir", str(tmp_path / "data"), "--split", split,
            "--results_path", str(results), "--version", str(tiny_videoglamm_kwargs["checkpoint"]),
            "--vision-tower", str(tiny_videoglamm_kwargs["vision_tower"]),
            "--video-tower", str(tiny_videoglamm_kwargs["video_tower"]), "--num_retain_tokens", "81", "--preset", preset]
    assert main(argv) == 0
    entry = load_stats(results)[-1]
    assert entry["benchmark"] == benchmark and entry["budget"] == 81 and entry["n_failed"] == 0
    assert 0.0 <= entry["J&F"] <= 1.0 and entry["n_expressions"] >= 1
    assert main(argv + ["--resume"]) == 0
    again = load_stats(results)[-1]
    assert (again["J"], again["F"]) == (entry["J"], entry["F"])
