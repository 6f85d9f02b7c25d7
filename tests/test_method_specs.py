"""Method specs (``name:key=value,...``) in the harnesses and CLIs: the same grammar as ``litelvlm bench``
(``litelvlm.run_options.split_method_spec``), the spec in the run id as a plain file name, bad specs refused in one
line before any model is built."""

import warnings

import pytest

import eval.refseg.cli as refseg_cli
import eval.rvos.cli as rvos_cli
from eval.rvos.synthetic import SyntheticRVOSConfig, write_synthetic_mevis
from litelvlm.run_options import check_method, method_file_name, split_method_spec

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools under numpy 2


def test_specs_split_and_name_their_runs_as_plain_file_names():
    assert split_method_spec("litelvlm-time:reuse_threshold=2,video_tokens=16") == (
        "litelvlm-time", {"reuse_threshold": 2, "video_tokens": 16})
    assert split_method_spec("dycoke") == ("dycoke", {})
    assert method_file_name("dycoke") == "dycoke"  # a bare name keeps the run ids of earlier runs
    assert method_file_name("dycoke:released=True") == "dycoke@released=True"
    assert method_file_name("fastvid:tau=0.8,c=4") == method_file_name("fastvid:c=4, tau=0.8") == "fastvid@c=4@tau=0.8"
    assert method_file_name("sttm:mode=../../x y") == "sttm@mode=.._.._x_y"  # no separator, no space
    assert check_method("litelvlm-time:reuse_threshold=2", 81, media="video") == "litelvlm-time:reuse_threshold=2"


def test_get_method_builds_a_spec_with_its_options():
    from litelvlm.pruning import get_method

    assert get_method("litelvlm-time:reuse_threshold=2").reuse_threshold == 2
    assert get_method("dycoke:released=True").released
    with pytest.raises(ValueError, match="option layer is set twice"):
        get_method("dycoke:layer=2", layer=3)


def test_the_video_segmenter_keeps_its_litelvlm_cell_for_a_litelvlm_spec(tiny_video_segmenter):
    seg = tiny_video_segmenter
    cell = seg.config.litelvlm_cell
    assert seg.config.layout == "cells" and cell > 1
    assert seg._selector("litelvlm:context_share=0.25").cell == cell
    assert seg._selector("litelvlm:context_share=0.25").context_share == 0.25
    assert seg._selector("litelvlm:cell=1").cell == 1


@pytest.fixture(scope="module")
def mevis(tmp_path_factory):
    return write_synthetic_mevis(tmp_path_factory.mktemp("mevis"), SyntheticRVOSConfig(num_videos=1, num_frames=4, num_objects=1))


@pytest.fixture
def built(monkeypatch):
    """The selectors the video segmenter builds (``video.segmenter.get_method`` spied on), in order."""
    from litelvlm.pruning import methods

    selectors, real_get = [], methods.get_method

    def spying_get(spec, **options):
        selector = real_get(spec, **options)
        selectors.append(selector)
        return selector

    monkeypatch.setattr("video.segmenter.get_method", spying_get)
    return selectors


def _rvos_argv(mevis, kwargs, results, *extra):
    return ["--benchmark", "mevis", "--dataset_dir", str(mevis.root), "--results_path", str(results),
            "--version", str(kwargs["checkpoint"]), "--vision-tower", str(kwargs["vision_tower"]),
            "--video-tower", str(kwargs["video_tower"]), "--num_retain_tokens", "81", "--preset", "default", *extra]


def test_the_video_harness_runs_a_method_spec_under_its_own_run_id(mevis, tiny_videoglamm_kwargs, tmp_path, built):
    from eval.common import load_stats
    results = tmp_path / "res"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # DyCoke's released layer on the 2-layer tiny LLM
        assert rvos_cli.main(_rvos_argv(mevis, tiny_videoglamm_kwargs, results, "--method", "dycoke:released=True")) == 0
    entry = load_stats(results)[-1]
    assert entry["method"] == "dycoke:released=True"
    assert entry["run_id"] == "mevis_valid_u_dycoke@released=True_b81_default"
    assert (results / "predictions" / entry["run_id"]).is_dir()
    assert built and all(s.name == "dycoke" and s.released for s in built)  # the options reached the segmenter


@pytest.mark.parametrize("spec, words", [
    ("dycoke:released", ["method 'dycoke:released'", "key=value pairs", "got 'released'"]),
    ("dycoke:nope=1", ["--method dycoke:nope=1", "bad options for method 'dycoke'", "nope"]),
    ("litelvlm-time:video_tokens=0", ["--method litelvlm-time:video_tokens=0", "video_tokens must be >= 1"]),
    ("bogus:x=1", ["unknown pruning method 'bogus'"]),
    ("fastv/..:layer=2", ["--method", "method name"]),
    ("none", ["--method none keeps all 576 CLIP tokens", "--num_retain_tokens 576"]),
], ids=["no-value", "unknown-option", "bad-value", "unknown-name", "path-in-name", "unpruned-with-a-budget"])
def test_the_video_harness_refuses_a_bad_spec_in_one_line_before_the_model(spec, words, mevis, tiny_videoglamm_kwargs,
                                                                           tmp_path, capsys, monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("the model builder was reached although the method spec is bad")

    monkeypatch.setattr("eval.rvos.runner.build_video_segmenter", never)
    assert rvos_cli.main(_rvos_argv(mevis, tiny_videoglamm_kwargs, tmp_path / "res", "--method", spec)) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    assert all(word in lines[0] for word in words), lines[0]
    assert not (tmp_path / "res").exists()


def test_the_image_harness_takes_a_spec_and_refuses_a_bad_one(tiny_glamm_dirs, tmp_path, capsys, monkeypatch):
    from eval.refseg import RefSegConfig
    from eval.refseg.synthetic import write_synthetic_refer

    config = RefSegConfig(checkpoint="c", method="litelvlm:context_share=0.25", refer_seg_data="refcoco|val")
    assert config.run_id == "refcoco_val_litelvlm@context_share=0.25_b576_all"
    refer = write_synthetic_refer(tmp_path / "refer", datasets=("refcoco",), seed=1)
    monkeypatch.setattr("eval.refseg.runner.build_segmenter", lambda *a, **k: pytest.fail("the model builder was reached"))
    argv = ["--dataset_dir", str(refer.dataset_dir), "--refer_seg_data", "refcoco|val", "--results_path", str(tmp_path / "res"),
            "--version", str(tiny_glamm_dirs["glamm"]), "--vision-tower", str(tiny_glamm_dirs["clip"]),
            "--method", "litelvlm:context_share=2"]
    assert refseg_cli.main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "--method litelvlm:context_share=2" in lines[0] and "context_share must be in [0, 1)" in lines[0]
    assert refseg_cli.main([*argv[:-1], "none", "--num_retain_tokens", "64"]) == 2  # the unpruned model at a budget
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "--method none keeps all 576 CLIP tokens" in lines[0], lines


def test_segment_video_runs_a_method_spec(tmp_path, tiny_videoglamm_kwargs):
    import json

    import numpy as np

    from litelvlm.cli import main
    from video.io import write_mp4

    clip = write_mp4(np.random.default_rng(3).integers(0, 256, size=(5, 36, 48, 3), dtype=np.uint8), tmp_path / "c.mp4", fps=5)
    kwargs = tiny_videoglamm_kwargs
    argv = ["segment-video", "--video", str(clip), "--text", "the dog", "--budget", "81", "--answer", "Sure, [SEG].",
            "--method", "litelvlm-time:video_tokens=4", "--checkpoint", str(kwargs["checkpoint"]),
            "--vision-tower", str(kwargs["vision_tower"]), "--video-tower", str(kwargs["video_tower"]),
            "--out", str(tmp_path / "o")]
    assert main(argv) == 0
    report = json.loads((tmp_path / "o" / "result.json").read_text())
    assert report["method"] == "litelvlm-time" and report["visual_tokens_per_frame"] <= 21 + 4  # 4 video tokens, not 8


@pytest.mark.parametrize("method", ["sttm", "holitom"])
def test_sttm_and_holitom_run_end_to_end_in_the_video_harness(method, mevis, tiny_videoglamm_kwargs, tmp_path, built):
    """Issue 19's done-when: STTM and HoliTom through `python -m eval.rvos` on the tiny VideoGLaMM: scored, with
    their merging reaching the segmenter and fewer LLM visual tokens per frame than the unpruned model sends."""
    from eval.common import load_stats
    results = tmp_path / "res"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # released layers on the 2-layer tiny LLM
        assert rvos_cli.main(_rvos_argv(mevis, tiny_videoglamm_kwargs, results, "--method", method)) == 0
        assert built and all(s.name == method for s in built)  # the method reached the segmenter
        assert rvos_cli.main(_rvos_argv(mevis, tiny_videoglamm_kwargs, results, "--method", "none",
                                        "--num_retain_tokens", "576")) == 0
    pruned, unpruned = load_stats(results)[-2:]
    assert pruned["method"] == method and pruned["run_id"] == f"mevis_valid_u_{method}_b81_default"
    assert all(0.0 <= pruned[k] <= 1.0 for k in ("J", "F", "J&F")), pruned
    assert 0 < pruned["visual_tokens_per_frame"] < unpruned["visual_tokens_per_frame"]
