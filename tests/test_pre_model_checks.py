"""Checks that need no model run before one is built, in every CLI and harness: method names (and whether the method
runs on images or videos), budgets (at most the 576 CLIP tokens of a frame; a square for the video layout
``regrid``), devices. The model builders are replaced by ones that fail the test, with real checkpoints and
datasets in place, so without the checks these runs would reach them (``no_model_builds``, conftest.py)."""

import numpy as np
import pytest
import torch

import eval.refseg.cli as refseg_cli
import eval.rvos.cli as rvos_cli
import litelvlm
from eval.refseg.synthetic import write_synthetic_refer
from eval.rvos.synthetic import SyntheticRVOSConfig, write_synthetic_mevis
from litelvlm.cli import main
from litelvlm.demo import sample_image_path
from litelvlm.run_options import check_frame_budget, check_method, check_method_runs_on
from video.io import write_mp4

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools under numpy 2


@pytest.fixture(scope="module")
def refer(tmp_path_factory):
    return write_synthetic_refer(tmp_path_factory.mktemp("refer"), datasets=("refcoco",), seed=1)


@pytest.fixture(scope="module")
def mevis(tmp_path_factory):
    return write_synthetic_mevis(tmp_path_factory.mktemp("mevis"), SyntheticRVOSConfig(num_videos=1, num_frames=4, seed=2))


def _error_line(capsys, prefix: str = "error: ") -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    assert lines[0].startswith(prefix), lines[0]
    return lines[0]


# ----------------------------------------------------------------------------------------------- eval.refseg
@pytest.mark.parametrize("extra, words", [
    (["--method", "bogus"], ["unknown pruning method 'bogus'", "litelvlm"]),
    (["--num_retain_tokens", "1000000000"], ["--num_retain_tokens 1000000000", "576 CLIP tokens", "1 to 576"]),
    (["--num_retain_tokens", "577"], ["--num_retain_tokens 577", "1 to 576"]),
    (["--method", "litelvlm-time", "--num_retain_tokens", "192"], ["--method litelvlm-time", "video clip", "images"]),
    (["--device", "cuda"], ["--device cuda", "no CUDA device", "--device cpu"]),
], ids=["method-bogus", "budget-1e9", "budget-577", "clip-level-method", "cuda-on-cpu"])
def test_refseg_refuses_before_the_model(extra, words, refer, tiny_glamm_dirs, tmp_path, capsys, monkeypatch, no_model_builds):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    argv = ["--dataset_dir", str(refer.dataset_dir), "--refer_seg_data", "refcoco|val", "--results_path", str(tmp_path / "res"),
            "--version", str(tiny_glamm_dirs["glamm"]), "--vision-tower", str(tiny_glamm_dirs["clip"]), *extra]
    assert refseg_cli.main(argv) == 2
    line = _error_line(capsys)
    assert all(word in line for word in words), line


def test_refseg_scoring_saved_predictions_keeps_any_method_label(tmp_path):
    from eval.refseg import RefSegConfig

    assert RefSegConfig(predictions=str(tmp_path / "p.jsonl"), method="someone-elses-method").method == "someone-elses-method"


# ------------------------------------------------------------------------------------------------- eval.rvos
def _rvos_argv(mevis, kwargs, tmp_path, *extra):
    return ["--benchmark", "mevis", "--dataset_dir", str(mevis.root), "--results_path", str(tmp_path / "res"),
            "--version", str(kwargs["checkpoint"]), "--vision-tower", str(kwargs["vision_tower"]),
            "--video-tower", str(kwargs["video_tower"]), *extra]


@pytest.mark.parametrize("extra, words", [
    (["--method", "bogus", "--num_retain_tokens", "81"], ["unknown pruning method 'bogus'"]),
    (["--method", "bogus"], ["unknown pruning method 'bogus'"]),
    (["--num_retain_tokens", "192"], ["--num_retain_tokens 192", "layout 'regrid'", "square", "169, 196"]),
    (["--method", "fastv", "--num_retain_tokens", "144"], ["fastv", "layout 'regrid'"]),
    (["--device", "cuda"], ["--device cuda", "no CUDA device"]),
], ids=["method-bogus-with-budget", "method-bogus", "regrid-not-square", "fastv-regrid", "cuda-on-cpu"])
def test_rvos_refuses_before_the_model(extra, words, mevis, tiny_videoglamm_kwargs, tmp_path, capsys, monkeypatch,
                                       no_model_builds):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert rvos_cli.main(_rvos_argv(mevis, tiny_videoglamm_kwargs, tmp_path, *extra)) == 2
    line = _error_line(capsys)
    assert all(word in line for word in words), line


def test_rvos_layout_check_follows_the_preset(mevis, tiny_videoglamm_kwargs, tmp_path, capsys, no_model_builds):
    """192 is no square: refused under the released preset (regrid); the default preset's cells layout takes it."""
    argv = _rvos_argv(mevis, tiny_videoglamm_kwargs, tmp_path, "--num_retain_tokens", "192", "--preset", "default")
    with pytest.raises(Exception, match="model builder was reached"):  # the harness wraps it in its ModelBuildError
        rvos_cli.main(argv)


# ----------------------------------------------------------------------------------- litelvlm segment / segment-video
def _segment(ctx, *extra):
    return ["segment", "--image", str(sample_image_path()), "--text", "the car", "--glamm", str(ctx["glamm"]),
            "--vision-tower", str(ctx["clip"]), "--out", str(ctx["tmp"] / "out"), *extra]


def _segment_video(ctx, *extra):
    video = write_mp4(np.zeros((4, 32, 40, 3), np.uint8), ctx["tmp"] / "c.mp4", fps=4)
    kwargs = ctx["video"]
    return ["segment-video", "--video", str(video), "--text", "the dog", "--checkpoint", str(kwargs["checkpoint"]),
            "--vision-tower", str(kwargs["vision_tower"]), "--video-tower", str(kwargs["video_tower"]),
            "--out", str(ctx["tmp"] / "out"), *extra]


@pytest.fixture
def ctx(tmp_path, tiny_glamm_dirs, tiny_videoglamm_kwargs):
    return {"tmp": tmp_path, "video": tiny_videoglamm_kwargs, **tiny_glamm_dirs}


@pytest.mark.parametrize("argv, words", [
    (lambda c: _segment(c, "--budget", "100000"), ["--budget 100000", "1 to 576"]),
    (lambda c: _segment(c, "--budget", "64", "--method", "litelvlm-time"), ["litelvlm-time", "video clip", "images"]),
    (lambda c: _segment_video(c, "--budget", "100000"), ["--budget 100000", "1 to 576"]),
    (lambda c: _segment_video(c, "--budget", "100000", "--method", "dycoke"), ["--budget 100000"]),
    (lambda c: _segment_video(c, "--budget", "150", "--layout", "regrid"), ["--budget 150", "layout 'regrid'", "square"]),
    (lambda c: _segment_video(c, "--budget", "144", "--layout", "regrid", "--method", "fastv"), ["fastv", "'regrid'"]),
    (lambda c: _segment_video(c, "--budget", "150", "--preset", "released"), ["--budget 150", "layout 'regrid'"]),
    (lambda c: ["bench", "--quick", "--budget", "1000"], ["--budget 1000", "1 to 576"]),
    (lambda c: ["bench", "--quick", "--video-budget", "600"], ["--video-budget 600", "1 to 576"]),
], ids=["segment-budget", "segment-clip-level", "video-budget", "video-clip-level-budget", "video-regrid",
        "video-fastv-regrid", "video-released-preset", "bench-budget", "bench-video-budget"])
def test_litelvlm_cli_refuses_before_the_model(argv, words, ctx, capsys, no_model_builds):
    args = argv(ctx)
    assert main(args) == 2
    line = _error_line(capsys, f"litelvlm {args[0]}: error: ")
    assert all(word in line for word in words), line


def test_litelvlm_load_refuses_before_the_model(no_model_builds, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="budget 100000: .*1 to 576"):
        litelvlm.load("glamm", "tiny", budget=100000)
    with pytest.raises(ValueError, match="method dycoke .*does not run on images"):
        litelvlm.load("glamm", "tiny", method="dycoke")
    with pytest.raises(ValueError, match="no CUDA device"):
        litelvlm.load("glamm", "tiny", device="cuda")
    with pytest.raises(ValueError, match="budget 192 with layout 'regrid'"):
        litelvlm.load("videoglamm", "tiny", budget=192, preset="released")
    with pytest.raises(AssertionError, match="model builder was reached"):  # the override's layout is used
        litelvlm.load("videoglamm", "tiny", budget=192, preset="released", layout="cells")


def test_shared_checks():
    check_frame_budget(None)
    check_frame_budget(576)
    for bad in (0, 577, True, 1.5):
        with pytest.raises(ValueError):
            check_frame_budget(bad, "--x")
    check_method_runs_on("fastv", "image")
    check_method_runs_on("litelvlm-time", "video")
    with pytest.raises(ValueError, match="does not run on images"):
        check_method_runs_on("prunevid", "image")
    assert check_method(None, 64) == "litelvlm" and check_method(None, None) == "none"
    assert check_method("litelvlm-time", None, 500, media="video") == "litelvlm-time"
