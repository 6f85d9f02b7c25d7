"""``python -m eval.rvos`` end to end on synthetic MeViS / Ref-DAVIS17 / Ref-YouTube-VOS data: saved-prediction
scoring against independent restatements, model runs with a fake VideoSegmenter, layouts, zips, bad inputs."""

import io
import json
import shutil
import sys
import zipfile

import numpy as np
import pytest
from PIL import Image

from eval.common.stats import load_stats
from eval.rvos.cli import main
from eval.rvos.synthetic import (SyntheticRVOSConfig, write_synthetic_mevis, write_synthetic_predictions,
                                 write_synthetic_ref_davis17, write_synthetic_ref_ytvos)
from eval.rvos.synthetic_segmenter import SyntheticVideoSegmenter, frames_digest
from test_rvos_scoring import noisy_predictions, ref_davis, ref_mevis

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools under numpy 2

FACTORY = "eval.rvos.synthetic_segmenter:SyntheticVideoSegmenter"
CFG = SyntheticRVOSConfig(num_videos=3, num_frames=4, height=21, width=30, num_objects=2, seed=11)
MODEL_ARGS = ["--version", "ckpt", "--video-tower", "iv2.pt", "--segmenter-factory", FACTORY]


def rvos_argv(benchmark, dataset_dir, results, *extra):
    """Command line of one harness run."""
    return ["--benchmark", benchmark, "--dataset_dir", str(dataset_dir), "--results_path", str(results), *extra]


def read_meta(path):
    return json.loads(path.read_text())["videos"]


def expected_model_masks(image_dir, meta, budget, method="litelvlm"):
    """{(video, exp_id): (T, H, W) bool} from calling the fake model directly on frames read here with PIL."""
    seg, out = SyntheticVideoSegmenter(), {}
    for vid, entry in meta.items():
        frames = np.stack([np.asarray(Image.open(image_dir / vid / f"{f}.jpg").convert("RGB")) for f in entry["frames"]])
        exp_ids = list(entry["expressions"])
        res = seg.segment(frames, [entry["expressions"][e]["exp"] for e in exp_ids], budget=budget, method=method)
        out.update({(vid, e): res.masks[i] for i, e in enumerate(exp_ids)})
    return out


def read_png_tree(pred_dir, meta, missing_ok=False):
    """{(video, exp_id): (T, H, W) PNG values}; with ``missing_ok`` an absent expression folder is left out."""
    return {(vid, e): np.stack([np.asarray(Image.open(pred_dir / vid / e / f"{f}.png")) for f in entry["frames"]])
            for vid, entry in meta.items() for e in entry["expressions"] if not (missing_ok and not (pred_dir / vid / e).is_dir())}


def write_factory_module(folder, name, failing_frames=(), bad_shape=False):
    """A module ``name`` in ``folder`` whose ``make`` builds a fake segmenter failing for videos with these frames."""
    digests = [frames_digest(f) for f in failing_frames]
    body = (f"from eval.rvos.synthetic_segmenter import SyntheticVideoSegmenter\n"
            f"class Segmenter(SyntheticVideoSegmenter):\n"
            f"    def segment(self, *args, **kwargs):\n"
            f"        res = super().segment(*args, **kwargs)\n"
            f"        if {bad_shape!r}:\n"
            f"            res.masks = res.masks[:, :, :-1]\n"
            f"        return res\n"
            f"def make(config):\n"
            f"    return Segmenter(config, fail_digests={digests!r})\n")
    (folder / f"{name}.py").write_text(body)
    return f"{name}:make"


@pytest.fixture(scope="module")
def mevis(tmp_path_factory):
    root = tmp_path_factory.mktemp("mevis")
    return write_synthetic_mevis(root, CFG)


# ---------------------------------------------------------------- saved predictions


def test_saved_predictions_on_mevis_match_the_restatement(mevis, tmp_path):
    noisy_predictions(mevis, tmp_path / "pred", seed=3)
    argv = rvos_argv("mevis", mevis.root, tmp_path / "res", "--predictions", str(tmp_path / "pred"),
                     "--num_retain_tokens", "81", "--method", "visionzip")
    assert main(argv) == 0
    (entry,) = load_stats(tmp_path / "res")
    j, f, n = ref_mevis(mevis.root / "valid_u", tmp_path / "pred")
    assert entry["J"] == pytest.approx(j, abs=1e-6) and entry["F"] == pytest.approx(f, abs=1e-6)
    assert entry["J&F"] == pytest.approx((j + f) / 2, abs=1e-6) and 0 < entry["J&F"] < 1
    assert entry["n_expressions"] == n == 3 * CFG.num_videos
    assert (entry["benchmark"], entry["split"], entry["method"], entry["budget"]) == ("mevis", "valid_u", "visionzip", 81)
    for key in ("visual_tokens_per_frame", "seconds", "timestamp", "checkpoint"):
        assert key in entry
    assert not (tmp_path / "res" / "records").exists()  # nothing to resume when only scoring
    details = json.loads((tmp_path / "res" / "scores" / "mevis_valid_u_visionzip_b81_pred.json").read_text())
    assert len(details["expressions"]) == n


def test_missing_predictions_are_named_and_only_allowed_on_request(mevis, tmp_path, capsys):
    noisy_predictions(mevis, tmp_path / "pred", seed=4)
    shutil.rmtree(tmp_path / "pred" / "video02")
    shutil.rmtree(tmp_path / "pred" / "video00" / "2")
    (tmp_path / "pred" / "video01" / "0" / "00003.png").unlink()
    argv = rvos_argv("mevis", mevis.root, tmp_path / "res", "--predictions", str(tmp_path / "pred"))
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--allow-missing" in err
    for part in ("1 missing videos (e.g. video02)", "1 missing expressions (e.g. video00/2)",
                 "1 missing frames (e.g. video01/0/00003.png)"):
        assert part in err
    assert not load_stats(tmp_path / "res")
    assert main(argv + ["--allow-missing"]) == 0
    (entry,) = load_stats(tmp_path / "res")
    j, f, _ = ref_mevis(mevis.root / "valid_u", tmp_path / "pred")  # missing = J = F = 0
    assert entry["J"] == pytest.approx(j, abs=1e-6) and entry["F"] == pytest.approx(f, abs=1e-6)
    assert entry["missing"] == {"videos": 1, "expressions": 1, "frames": 1}
    assert "J = F = 0" in capsys.readouterr().err


def test_limit_scores_the_first_videos_only(mevis, tmp_path):
    write_synthetic_predictions(mevis, tmp_path / "pred")
    shutil.rmtree(tmp_path / "pred" / "video02")  # not needed with --limit 2
    assert main(rvos_argv("mevis", mevis.root, tmp_path / "res", "--predictions", str(tmp_path / "pred"),
                          "--limit", "2")) == 0
    (entry,) = load_stats(tmp_path / "res")
    assert entry["J"] == entry["F"] == 1.0 and entry["n_videos"] == 2 and entry["n_expressions"] == 6


# ---------------------------------------------------------------- model runs (fake VideoSegmenter)


def test_model_run_on_mevis_writes_the_model_masks_and_scores_them(mevis, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(SyntheticVideoSegmenter, "segment", _counting(SyntheticVideoSegmenter.segment, calls))
    results = tmp_path / "res"
    assert main(rvos_argv("mevis", mevis.root, results, *MODEL_ARGS, "--num_retain_tokens", "192")) == 0
    calls = list(calls)
    (entry,) = load_stats(results)
    meta = read_meta(mevis.root / "valid_u" / "meta_expressions.json")
    pred_dir = results / "predictions" / "mevis_valid_u_litelvlm_b192"
    assert entry["predictions"] == str(pred_dir)
    expected = expected_model_masks(mevis.root / "valid_u" / "JPEGImages", meta, budget=192)
    written = read_png_tree(pred_dir, meta, missing_ok=True)  # released preset: nothing written without [SEG]
    (records_file,) = (results / "records").glob("*.rank0.jsonl")
    records = [json.loads(line) for line in records_file.read_text().splitlines()]
    assert set(written) == {(r["video"], r["exp_id"]) for r in records if r["has_seg"]} and len(written) < len(expected)
    for key, masks in written.items():
        assert set(np.unique(masks)) <= {0, 255} and np.array_equal(masks != 0, expected[key]), key
    j, f, n = ref_mevis(mevis.root / "valid_u", pred_dir)
    assert entry["J"] == pytest.approx(j, abs=1e-6) and entry["F"] == pytest.approx(f, abs=1e-6)
    # one segment call per video with all of its expressions
    assert [len(c) for c in calls] == [3] * CFG.num_videos
    assert [(r["video"], r["exp_id"]) for r in records] == list(expected)
    assert all((r["status"] == "ok") == r["has_seg"] and r["status"] in ("ok", "no_seg") for r in records)
    assert entry["n_no_seg"] == sum(not r["has_seg"] for r in records) >= 1 and entry["n_ok"] >= 1
    assert all(not expected[(r["video"], r["exp_id"])].any() for r in records if r["status"] == "no_seg")
    no_seg = [f"{r['video']}/{r['exp_id']}" for r in records if r["status"] == "no_seg"]
    assert entry["no_seg_rule"] == "skip" and entry["no_seg_expressions"] == no_seg
    assert all(r["masks_written"] == r["has_seg"] and r["clips_without_seg"] == ([] if r["has_seg"] else [0]) for r in records)
    assert entry["visual_tokens_per_frame"] == 192 + 64 and entry["n_failed"] == 0
    assert {"encode", "llm", "decode"} == set(records[0]["timings"]) == set(entry["timings_per_video_s"])


def _counting(segment, calls):
    def wrapped(self, frames, expressions, *args, **kwargs):
        calls.append(list(expressions))
        return segment(self, frames, expressions, *args, **kwargs)
    return wrapped


def test_full_budget_means_no_pruning(mevis, tmp_path):
    seen = []

    class Recording(SyntheticVideoSegmenter):
        def segment(self, frames, expressions, budget=None, method="litelvlm"):
            seen.append((frames.dtype, frames.shape, budget, method))
            return super().segment(frames, expressions, budget, method)

    assert main(rvos_argv("mevis", mevis.root, tmp_path, "--version", "c", "--video-tower", "v.pt", "--limit", "1",
                          "--method", "fastv"), segmenter_factory=Recording) == 0
    assert seen == [(np.uint8, (CFG.num_frames, CFG.height, CFG.width, 3), None, "fastv")]
    (entry,) = load_stats(tmp_path)
    assert entry["budget"] == 576 and entry["visual_tokens_per_frame"] == 576 + 64


class WaitingSegmenter(SyntheticVideoSegmenter):
    """Waits 50 ms (wall time, no CPU time) inside its one timed stage, under the harness's clock."""

    def segment(self, frames, expressions, budget=None, method="litelvlm"):
        import time

        from litelvlm.timing import StageTimer

        timer = StageTimer()
        with timer("llm"):
            time.sleep(0.05)
            res = super().segment(frames, expressions, budget, method)
        res.timings = timer.as_dict()
        return res


@pytest.mark.parametrize("clock, counts_waiting", [("cpu", False), ("wall", True)])
def test_the_clock_times_the_model_and_is_pinned_in_the_run_meta(mevis, tmp_path, clock, counts_waiting):
    from eval.rvos import RVOSConfig, run_rvos

    config = RVOSConfig(benchmark="mevis", dataset_dir=str(mevis.root), results_path=str(tmp_path), checkpoint="c",
                        video_tower="v.pt", limit=1, clock=clock)
    run_rvos(config, segmenter_factory=WaitingSegmenter)
    (records,) = (tmp_path / "records").glob("*.rank0.jsonl")
    timed = [json.loads(line)["timings"]["total"] for line in records.read_text().splitlines()]
    assert timed and all((seconds >= 0.05) == counts_waiting for seconds in timed)
    (meta,) = (tmp_path / "records").glob("*.meta.json")
    assert json.loads(meta.read_text())["clock"] == clock


def test_davis_model_run_layout_and_scores(tmp_path):
    cfg = SyntheticRVOSConfig(num_videos=2, num_frames=3, height=21, width=30, num_objects=3, seed=5)
    write_synthetic_ref_davis17(tmp_path / "davis", cfg)
    results = tmp_path / "res"
    # litelvlm's preset writes empty masks without [SEG] (the released one refuses such a video: test_rvos_no_seg.py)
    assert main(rvos_argv("davis", tmp_path / "davis", results, *MODEL_ARGS, "--num_retain_tokens", "81",
                          "--preset", "default")) == 0
    (entry,) = load_stats(results)
    meta = read_meta(tmp_path / "davis" / "meta_expressions" / "valid" / "meta_expressions.json")
    pred_dir = results / "predictions" / "davis_valid_litelvlm_b81_default"
    expected = expected_model_masks(tmp_path / "davis" / "valid" / "JPEGImages", meta, budget=81)
    written = read_png_tree(pred_dir, meta)
    assert all(np.array_equal(written[k] != 0, expected[k]) for k in expected) and len(expected) == 24
    settings = ref_davis(tmp_path / "davis", pred_dir)
    assert entry["J"] == pytest.approx(np.mean([j for j, _ in settings]), abs=1e-6)
    assert entry["F"] == pytest.approx(np.mean([f for _, f in settings]), abs=1e-6)
    for a, (j, f) in enumerate(settings):
        assert entry["settings"][f"anno_{a}"]["J"] == pytest.approx(j, abs=1e-6)
        assert entry["settings"][f"anno_{a}"]["F"] == pytest.approx(f, abs=1e-6)
    assert entry["dataset"] == "ref_davis17" and entry["n_expressions"] == 24 and entry["submission"] is None


def read_zip(path):
    with zipfile.ZipFile(path) as zf:
        return {name: np.asarray(Image.open(io.BytesIO(zf.read(name)))) for name in zf.namelist()}


def test_ytvos_model_run_writes_the_upload_zip(tmp_path):
    cfg = SyntheticRVOSConfig(num_videos=2, num_frames=3, height=14, width=18, frame_step=5, seed=2)
    write_synthetic_ref_ytvos(tmp_path / "yt", cfg, num_test_videos=1)
    results = tmp_path / "res"
    assert main(rvos_argv("ytvos", tmp_path / "yt", results, *MODEL_ARGS, "--num_retain_tokens", "196")) == 0
    (entry,) = load_stats(results)
    zip_path = results / "submissions" / "ytvos_valid_litelvlm_b196.zip"
    assert entry["submission"] == str(zip_path) and entry["J"] is None and entry["J&F"] is None
    meta = read_meta(tmp_path / "yt" / "meta_expressions" / "valid" / "meta_expressions.json")
    meta.pop("test00")  # the valid meta lists the test videos too; they are not submitted
    expected = expected_model_masks(tmp_path / "yt" / "valid" / "JPEGImages", meta, budget=196)
    entries = read_zip(zip_path)
    names = {f"Annotations/{v}/{e}/{f}.png" for (v, e) in expected for f in meta[v]["frames"]}
    assert set(entries) == names and entry["n_expressions"] == len(expected) == 4
    for name, arr in entries.items():
        _, vid, exp_id, frame = name.split("/")
        index = meta[vid]["frames"].index(frame[:-4])
        assert set(np.unique(arr)) <= {0, 255} and np.array_equal(arr == 255, expected[(vid, exp_id)][index])


def test_mevis_valid_predictions_become_a_zip_without_top_folder(tmp_path):
    synth = write_synthetic_mevis(tmp_path / "mevis", CFG, split="valid")
    write_synthetic_predictions(synth, tmp_path / "pred")
    results = tmp_path / "res"
    assert main(rvos_argv("mevis", tmp_path / "mevis", results, "--split", "valid", "--predictions",
                          str(tmp_path / "pred"))) == 0
    (entry,) = load_stats(results)
    entries = read_zip(entry["submission"])
    assert len(entries) == 3 * CFG.num_videos * CFG.num_frames and "video00/0/00000.png" in entries
    assert entry["J"] is None and entry["split"] == "valid"
    assert main(["--results_path", str(results), "--show-stats"]) == 0


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("extra, message", [
    (["--benchmark", "mevis", "--dataset_dir", "/nonexistent/mevis", *MODEL_ARGS],
     "mevis dataset root not found: /nonexistent/mevis"),
    (["--benchmark", "davis", *MODEL_ARGS], "meta_expressions.json not found"),
    (["--benchmark", "mevis", "--split", "train", *MODEL_ARGS], "/train/meta_expressions.json"),
    (["--benchmark", "mevis", "--version", "/nonexistent/ckpt", "--video-tower", "v.pt"],
     "VideoGLaMM checkpoint directory not found: /nonexistent/ckpt"),
    (["--benchmark", "mevis", "--version", "{tmp}", "--vision-tower", "{tmp}", "--video-tower", "/no/iv2.pt"],
     "InternVideo2 video tower (.pt) not found: /no/iv2.pt"),
    (["--benchmark", "mevis", "--predictions", "/nonexistent/pred"], "predictions folder not found: /nonexistent/pred"),
    (["--benchmark", "mevis", "--predictions", "p", "--resume"], "--resume continues a model run"),
    (["--benchmark", "mevis", "--video-tower", "v.pt"], "--version (the VideoGLaMM checkpoint folder) is required"),
    ([*MODEL_ARGS], "--benchmark is required"),
    (["--benchmark", "mevis", *MODEL_ARGS, "--num_retain_tokens", "0"], "in 1..576"),
    (["--benchmark", "mevis", *MODEL_ARGS, "--davis-annotations", "x"], "only applies to --benchmark davis"),
    (["--benchmark", "mevis", "--version", "c", "--video-tower", "v", "--segmenter-factory", "nope"],
     "must look like 'package.module:callable'"),
])
def test_bad_inputs_give_one_clear_line(mevis, tmp_path, capsys, extra, message):
    extra = [e.replace("{tmp}", str(tmp_path)) for e in extra]
    (tmp_path / "config.json").write_text("{}")  # {tmp} stands for a checkpoint / CLIP folder
    dataset_dir = [] if "--dataset_dir" in extra else ["--dataset_dir", str(mevis.root if "mevis" in extra else
                                                                          tmp_path)]
    assert main([*dataset_dir, "--results_path", str(tmp_path / "res"), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not load_stats(tmp_path / "res")


def test_module_entry_point_runs(mevis, tmp_path):
    import subprocess

    write_synthetic_predictions(mevis, tmp_path / "pred")
    done = subprocess.run([sys.executable, "-m", "eval.rvos", *rvos_argv("mevis", mevis.root, tmp_path / "res",
                                                                         "--predictions", str(tmp_path / "pred"))],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "J&F %" in done.stdout and load_stats(tmp_path / "res")[0]["J&F"] == 1.0


def test_davis_annotations_elsewhere_and_perfect_predictions(tmp_path, capsys):
    cfg = SyntheticRVOSConfig(num_videos=2, num_frames=3, height=14, width=18, num_objects=2, seed=9)
    synth = write_synthetic_ref_davis17(tmp_path / "davis", cfg)
    shutil.move(tmp_path / "davis" / "valid" / "Annotations", tmp_path / "Annotations_unsupervised")
    write_synthetic_predictions(synth, tmp_path / "pred")
    argv = rvos_argv("davis", tmp_path / "davis", tmp_path / "res", "--predictions", str(tmp_path / "pred"))
    assert main(argv) == 2  # no GT where the converted layout expects it
    err = capsys.readouterr().err.strip()
    assert err == (f"error: Ref-DAVIS17 annotations folder not found: {tmp_path / 'davis' / 'valid' / 'Annotations'} "
                   f"(the DAVIS-2017 Annotations_unsupervised PNGs; pass --davis-annotations)")
    assert main(argv + ["--davis-annotations", str(tmp_path / "Annotations_unsupervised")]) == 0
    (entry,) = load_stats(tmp_path / "res")
    assert entry["J"] == entry["F"] == entry["J&F"] == 1.0 and entry["n_expressions"] == 16
    assert all(s["J&F"] == 1.0 and s["n_objects"] == 4 for s in entry["settings"].values())


def test_a_model_that_cannot_be_built_keeps_its_traceback(mevis, tmp_path):
    from eval.rvos.runner import ModelBuildError

    def broken(config):
        raise ValueError("weights do not match the config")

    with pytest.raises(ModelBuildError, match="building the segmenter failed: ValueError: weights do not match") as err:
        main(rvos_argv("mevis", mevis.root, tmp_path, *MODEL_ARGS), segmenter_factory=broken)
    assert isinstance(err.value.__cause__, ValueError)
