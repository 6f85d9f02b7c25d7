"""``python -m eval.rvos --memory-budget / --memory-selector``: SAM2 memory pruning in the run id, records and stats."""

from __future__ import annotations

import pytest

from eval.rvos.config import RVOSConfig


def _argv(tmp_path, kwargs, *extra):
    return ["--benchmark", "mevis", "--dataset_dir", str(tmp_path / "data"), "--results_path", str(tmp_path / "res"),
            "--version", str(kwargs["checkpoint"]), "--vision-tower", str(kwargs["vision_tower"]),
            "--video-tower", str(kwargs["video_tower"]), "--num_retain_tokens", "81", "--preset", "default", *extra]


def test_the_memory_budget_and_selector_are_in_the_run_id_and_its_meta(tmp_path):
    base = dict(benchmark="mevis", checkpoint=str(tmp_path / "ckpt"), budget=81, preset="default")
    ids = {RVOSConfig(**base).run_id, RVOSConfig(**base, memory_budget=512).run_id,
           RVOSConfig(**base, memory_budget=256).run_id, RVOSConfig(**base, memory_budget=256, memory_selector="grid").run_id}
    assert len(ids) == 4
    assert RVOSConfig(**base, memory_budget=256, memory_selector="grid").run_id == "mevis_valid_u_litelvlm_b81_mb256-grid_default"
    assert RVOSConfig(**base, memory_budget=512).run_meta()["memory_budget"] == 512


def test_two_memory_budgets_make_two_runs_with_their_own_records(tmp_path, tiny_videoglamm_kwargs):
    from eval.common import load_stats
    from eval.rvos.cli import main
    from eval.rvos.synthetic import SyntheticRVOSConfig, write_synthetic_mevis

    write_synthetic_mevis(tmp_path / "data", SyntheticRVOSConfig(num_videos=1, num_frames=4, num_objects=1))
    for budget in (8, 4):  # the tiny SAM2 (64 px) has 16 memory tokens per frame
        assert main(_argv(tmp_path, tiny_videoglamm_kwargs, "--memory-budget", str(budget))) == 0
    first, second = load_stats(tmp_path / "res")[-2:]
    assert (first["memory_budget"], second["memory_budget"]) == (8, 4)
    assert first["run_id"].endswith("_mb8_default") and second["run_id"].endswith("_mb4_default")
    records = sorted(p.name for p in (tmp_path / "res" / "records").iterdir())
    assert any("_mb8_" in name for name in records) and any("_mb4_" in name for name in records)


@pytest.mark.parametrize("extra, message", [
    (["--memory-budget", "0"], "--memory-budget must be a number of SAM2 memory tokens per frame in 1..4096"),
    (["--memory-budget", "4097"], "--memory-budget must be a number of SAM2 memory tokens per frame in 1..4096"),
    (["--memory-budget", "8", "--memory-selector", "nope"], "unknown memory selector 'nope'"),
    (["--memory-selector", "grid"], "give --memory-budget too"),
])
def test_a_bad_memory_option_is_refused_in_one_line_before_loading(tmp_path, capsys, extra, message):
    from eval.rvos.cli import main

    missing = {"checkpoint": tmp_path / "no-checkpoint", "vision_tower": tmp_path / "no-clip", "video_tower": tmp_path / "no.pt"}
    assert main(_argv(tmp_path, missing, *extra)) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "res").exists()


def test_a_memory_budget_above_the_decoders_tokens_stops_the_run_before_any_video(tmp_path, tiny_videoglamm_kwargs):
    """Within 1..4096 but above the loaded decoder's memory tokens (the tiny SAM2 has 16): the model build fails,
    naming the range, before any video is segmented or recorded."""
    from eval.rvos.cli import main
    from eval.rvos.runner import ModelBuildError
    from eval.rvos.synthetic import SyntheticRVOSConfig, write_synthetic_mevis

    write_synthetic_mevis(tmp_path / "data", SyntheticRVOSConfig(num_videos=1, num_frames=4, num_objects=1))
    with pytest.raises(ModelBuildError, match=r"memory_budget must be an int in \[1, 16\]"):
        main(_argv(tmp_path, tiny_videoglamm_kwargs, "--memory-budget", "17"))
    predictions = tmp_path / "res" / "predictions"
    assert not predictions.exists() or not any(p.is_file() for p in predictions.rglob("*"))


def test_memory_options_are_refused_when_scoring_saved_predictions(tmp_path):
    with pytest.raises(ValueError, match="scoring --predictions runs no model"):
        RVOSConfig(benchmark="mevis", predictions=str(tmp_path), memory_budget=512)
