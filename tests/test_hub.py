"""Hub ids resolve through the huggingface_hub cache, offline, in the Hub's own on-disk layout."""

import pytest

from litelvlm.hub import HubNotAvailable, is_hub_id, resolve_file, resolve_folder, split_revision
from litelvlm.testing.hub import write_hub_cache


@pytest.fixture
def offline_cache(tmp_path, monkeypatch):
    cache = tmp_path / "hf" / "hub"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(cache))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    return cache


def test_ids_and_paths_are_told_apart(tmp_path):
    assert is_hub_id("MBZUAI/GLaMM-RefSeg") and is_hub_id("openai/clip-vit-large-patch14-336@main")
    assert not is_hub_id(str(tmp_path)) and not is_hub_id("./checkpoints/x") and not is_hub_id("justaname")
    assert split_revision("a/b@v1.0") == ("a/b", "v1.0") and split_revision("a/b") == ("a/b", None)


def test_cached_folder_and_file_resolve_offline(tmp_path, offline_cache):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "config.json").write_text("{}")
    (src / "sub" / "weights.pt").write_bytes(b"123")
    snapshot = write_hub_cache(offline_cache, "owner/model", src)
    folder = resolve_folder("owner/model", "test checkpoint")
    assert folder == snapshot and (folder / "config.json").read_text() == "{}"
    assert resolve_file("owner/model/sub/weights.pt", "test file").read_bytes() == b"123"
    other = write_hub_cache(offline_cache, "owner/model", src, revision="v2", commit="b" * 40)
    assert resolve_folder("owner/model@v2", "test checkpoint") == other


def test_offline_and_not_cached_names_the_id_and_the_download(offline_cache):
    with pytest.raises(HubNotAvailable) as err:
        resolve_folder("MBZUAI/GLaMM-RefSeg", "GLaMM checkpoint", patterns=["*.json", "*.bin"])
    message = str(err.value)
    assert "MBZUAI/GLaMM-RefSeg" in message and "hf download MBZUAI/GLaMM-RefSeg --include '*.json'" in message
    assert "\n" not in message
    with pytest.raises(HubNotAvailable, match="hf download OpenGVLab/X a/b.pt"):
        resolve_file("OpenGVLab/X/a/b.pt", "InternVideo2 .pt")


def test_local_paths_keep_working_and_bad_ones_are_named(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    assert resolve_folder(tmp_path, "x") == tmp_path
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="is not a x directory: missing config.json"):
        resolve_folder(tmp_path / "empty", "x")
    with pytest.raises(FileNotFoundError, match="is a file"):
        resolve_folder(tmp_path / "config.json", "x")
    with pytest.raises(FileNotFoundError, match="x directory not found: ./nowhere"):
        resolve_folder("./nowhere", "x")


def test_segmenters_load_cached_hub_ids_offline(offline_cache, tiny_glamm_dirs, tiny_videoglamm_kwargs):
    """GLaMM by its Hub id, its CLIP by the id its config names; VideoGLaMM, CLIP and the InternVideo2 .pt by id."""
    import numpy as np

    from litelvlm.glamm import GLaMMSegmenter
    from video.segmenter import VideoSegmenter

    write_hub_cache(offline_cache, "MBZUAI/GLaMM-RefSeg", tiny_glamm_dirs["glamm"])
    write_hub_cache(offline_cache, "openai/clip-vit-large-patch14-336", tiny_glamm_dirs["clip"])
    glamm = GLaMMSegmenter.from_pretrained("MBZUAI/GLaMM-RefSeg")
    assert str(offline_cache) in str(glamm.model.load_summary.path) and "snapshots" in str(glamm.clip.path)
    image = np.zeros((40, 50, 3), dtype=np.uint8)
    assert glamm.segment(image, ["the dog"], budget=64).masks.shape == (1, 40, 50)
    write_hub_cache(offline_cache, "someone/VideoGLaMM", tiny_videoglamm_kwargs["checkpoint"])
    write_hub_cache(offline_cache, "someone/InternVideo2", tiny_videoglamm_kwargs["video_tower"])
    video = VideoSegmenter.from_pretrained("someone/VideoGLaMM", vision_tower="openai/clip-vit-large-patch14-336",
                                           video_tower=f"someone/InternVideo2/{tiny_videoglamm_kwargs['video_tower'].name}")
    assert video.model.load_summary.path.parts[-2] == "snapshots" and video.model.load_summary.path.parts[-3] == "models--someone--VideoGLaMM"


def test_every_entry_point_takes_cached_hub_ids_offline(offline_cache, tiny_glamm_dirs, tiny_videoglamm_kwargs, tmp_path):
    """litelvlm segment / segment-video and both harnesses with Hub ids only (HF_HUB_OFFLINE, cache in the Hub layout)."""
    import json

    import numpy as np
    from PIL import Image

    from eval.refseg.cli import main as refseg_main
    from eval.refseg.synthetic import write_synthetic_refer
    from eval.rvos.cli import main as rvos_main
    from eval.rvos.synthetic import SyntheticRVOSConfig, write_synthetic_mevis
    from litelvlm.cli import main as cli_main

    write_hub_cache(offline_cache, "MBZUAI/GLaMM-RefSeg", tiny_glamm_dirs["glamm"])
    write_hub_cache(offline_cache, "openai/clip-vit-large-patch14-336", tiny_glamm_dirs["clip"])
    write_hub_cache(offline_cache, "someone/VideoGLaMM", tiny_videoglamm_kwargs["checkpoint"])
    write_hub_cache(offline_cache, "someone/InternVideo2", tiny_videoglamm_kwargs["video_tower"])
    pt = f"someone/InternVideo2/{tiny_videoglamm_kwargs['video_tower'].name}"
    Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(tmp_path / "img.png")
    # segment: the checkpoint's default id, and the CLIP id its config names
    assert cli_main(["segment", "--image", str(tmp_path / "img.png"), "--text", "a dog", "--budget", "64", "--out", str(tmp_path / "seg")]) == 0
    assert json.loads((tmp_path / "seg" / "result.json").read_text())["expressions"]
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(4):
        Image.fromarray(np.full((24, 32, 3), 40 * i, np.uint8)).save(frames / f"{i:05d}.jpg")
    assert cli_main(["segment-video", "--video", str(frames), "--text", "a dog", "--budget", "81", "--checkpoint", "someone/VideoGLaMM",
                     "--vision-tower", "openai/clip-vit-large-patch14-336", "--video-tower", pt, "--out", str(tmp_path / "vid"),
                     "--preset", "default"]) == 0
    data = write_synthetic_refer(tmp_path / "refer")
    assert refseg_main(["--version", "MBZUAI/GLaMM-RefSeg", "--dataset_dir", str(data.dataset_dir), "--refer_seg_data", "refcoco|val",
                        "--results_path", str(tmp_path / "refseg"), "--num_retain_tokens", "64", "--limit", "1"]) == 0
    write_synthetic_mevis(tmp_path / "mevis", SyntheticRVOSConfig(num_videos=1, num_frames=4, num_objects=1))
    assert rvos_main(["--benchmark", "mevis", "--dataset_dir", str(tmp_path / "mevis"), "--results_path", str(tmp_path / "rvos"),
                      "--version", "someone/VideoGLaMM", "--video-tower", pt, "--num_retain_tokens", "81", "--preset", "default"]) == 0
