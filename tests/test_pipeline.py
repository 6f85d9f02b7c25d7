"""``litelvlm.load``: one call from a model name to masks, on the embedded tiny checkpoints and cached Hub ids."""

import numpy as np
import pytest
from PIL import Image

import litelvlm
from litelvlm.pipeline import TINY_VERSION, TINY_WEIGHTS, as_frames, as_image
from litelvlm.testing.videos import scene_clip


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A fresh cache folder, holding what an earlier litelvlm left: a v1 tiny VideoGLaMM (random answers), not to be reused."""
    import os

    folder = tmp_path_factory.mktemp("litelvlm_cache")
    stale = folder / "tiny-videoglamm-v1"
    stale.mkdir()
    (stale / "paths.json").write_text('{"checkpoint": "/nonexistent/v1", "vision_tower": "/nonexistent/v1", "video_tower": "/nonexistent/v1.pt"}')
    old = os.environ.get("LITELVLM_CACHE")
    os.environ["LITELVLM_CACHE"] = str(folder)
    yield folder
    if old is None:
        os.environ.pop("LITELVLM_CACHE")
    else:
        os.environ["LITELVLM_CACHE"] = old


def test_image_pipeline_takes_paths_pil_and_arrays(cache, tmp_path):
    seg = litelvlm.load("glamm", "tiny", budget=64)
    assert seg.kind == "image" and seg.weights == TINY_WEIGHTS and "RANDOM weights" in seg.weights
    pixels = np.random.default_rng(0).integers(0, 256, size=(30, 40, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "a.png")
    from_path = seg(tmp_path / "a.png", "the dog")
    from_pil = seg(Image.fromarray(pixels), ["the dog"])
    from_array = seg(pixels, ["the dog"])
    assert from_path.masks.shape == (1, 30, 40) and from_path.num_visual_tokens == 64
    assert np.array_equal(from_path.masks, from_array.masks) and np.array_equal(from_pil.masks, from_array.masks)
    assert set(from_array.timings) >= {"clip_vision", "llm_prefill", "total"} and from_array.kept[0].numel() == 64
    assert seg(pixels, ["the dog"], budget=None).num_visual_tokens == 576
    assert (cache / f"tiny-glamm-v{TINY_VERSION}" / "paths.json").exists()


def test_video_pipeline_takes_a_folder_and_arrays(cache, tmp_path):
    seg = litelvlm.load("videoglamm", "tiny", budget=81, answer="Sure, [SEG].", mask_mode="none")
    frames = np.random.default_rng(1).integers(0, 256, size=(4, 24, 32, 3), dtype=np.uint8)
    (tmp_path / "frames").mkdir()
    for i, f in enumerate(frames):
        Image.fromarray(f).save(tmp_path / "frames" / f"{i:05d}.png")
    a = seg(tmp_path / "frames", ["a car"])
    b = seg(list(frames), "a car")
    assert seg.kind == "video" and a.masks.shape == (1, 4, 24, 32) and a.clip_tokens_per_frame == 21
    assert np.array_equal(a.masks, b.masks)


def test_the_tiny_video_model_answers_with_seg_and_finds_masks(cache):
    """Out of the box (generation, SAM2 propagation), as a newcomer runs it: "Sure, [SEG]." and non-empty masks."""
    seg = litelvlm.load("videoglamm", "tiny", budget=81)
    result = seg(scene_clip(5), ["the red car"])
    assert result.answers == [["Sure, [SEG].<|end|>"]] and result.has_seg == [True] and result.masks.any()
    assert (cache / f"tiny-videoglamm-v{TINY_VERSION}" / "paths.json").exists()


def test_bad_requests_are_named_before_loading():
    with pytest.raises(ValueError, match="model must be one of"):
        litelvlm.load("sam")
    with pytest.raises(ValueError, match="unknown pruning method .nosuch."):
        litelvlm.load("glamm", "tiny", method="nosuch")
    with pytest.raises(ValueError, match="not on the Hugging Face Hub"):
        litelvlm.load("videoglamm")
    with pytest.raises(ValueError, match="uint8"):
        as_image(np.zeros((4, 4, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="differ in size"):
        as_frames([np.zeros((4, 4, 3), np.uint8), np.zeros((5, 4, 3), np.uint8)])


def test_a_pil_image_is_decoded_as_its_file_would_be(tmp_path):
    """16-bit grayscale keeps its high byte whether it comes as a path or as a PIL image (convert('RGB') saturates)."""
    values = np.array([[0, 255, 4096], [30000, 65535, 512]], dtype=np.uint16)
    image = Image.fromarray(values)
    assert image.mode == "I;16"
    image.save(tmp_path / "deep.png")
    assert np.array_equal(as_image(image), as_image(tmp_path / "deep.png"))
    assert as_image(image)[..., 0].tolist() == [[0, 0, 16], [117, 255, 2]]
