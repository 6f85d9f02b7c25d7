"""Shared fixtures: tiny random checkpoints written once per test session (no downloads)."""

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory):
    from litelvlm.testing import make_tiny_clip

    return make_tiny_clip(tmp_path_factory.mktemp("clip"))


@pytest.fixture(scope="session")
def tiny_clip(tiny_clip_dir):
    from litelvlm.clip import load_clip_towers

    return load_clip_towers(tiny_clip_dir)


@pytest.fixture(scope="session")
def tiny_glamm_dirs(tmp_path_factory):
    """{"glamm": GLaMM-RefSeg-layout folder, "clip": CLIP folder}, tiny and random."""
    from litelvlm.testing import make_tiny_glamm

    return make_tiny_glamm(tmp_path_factory.mktemp("glamm"))


@pytest.fixture(scope="session")
def tiny_segmenter(tiny_glamm_dirs):
    from litelvlm.glamm import GLaMMSegmenter

    return GLaMMSegmenter.from_pretrained(tiny_glamm_dirs["glamm"], vision_tower=tiny_glamm_dirs["clip"])


@pytest.fixture(scope="session")
def tiny_videoglamm_kwargs(tmp_path_factory):
    """Keyword arguments of ``VideoSegmenter.from_pretrained`` for a tiny random VideoGLaMM."""
    from litelvlm.testing import make_tiny_videoglamm

    return make_tiny_videoglamm(tmp_path_factory.mktemp("videoglamm"))


@pytest.fixture(scope="session")
def tiny_video_segmenter(tiny_videoglamm_kwargs):
    from video.segmenter import VideoSegmenter

    return VideoSegmenter.from_pretrained(**tiny_videoglamm_kwargs)


def _model_build_reached(*args, **kwargs):
    raise AssertionError("the model builder was reached although a check that needs no model fails")


@pytest.fixture
def no_model_builds(monkeypatch):
    """Every way the CLIs, the harnesses, the demo, the bench and ``litelvlm.load`` build a model fails the test: bad
    input must be refused before."""
    from litelvlm.glamm import GLaMMSegmenter
    from video.segmenter import VideoSegmenter

    monkeypatch.setattr(GLaMMSegmenter, "from_pretrained", _model_build_reached)
    monkeypatch.setattr(VideoSegmenter, "from_pretrained", _model_build_reached)
    for target in ("eval.refseg.runner.build_segmenter", "eval.rvos.runner.build_video_segmenter",
                   "litelvlm.pipeline.tiny_checkpoint", "litelvlm.bench.run_bench", "litelvlm.demo.load_clip_towers"):
        monkeypatch.setattr(target, _model_build_reached)


@pytest.fixture(scope="module")
def tiny_cache(tmp_path_factory):
    """``$LITELVLM_CACHE`` for this module: the tiny checkpoints are written here once."""
    folder = tmp_path_factory.mktemp("litelvlm_cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LITELVLM_CACHE", str(folder))
        yield folder
