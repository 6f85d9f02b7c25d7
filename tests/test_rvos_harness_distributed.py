"""Two CPU processes (torchrun, gloo) give the single-process results; the benchmark scripts drive the harness."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from eval.common.records import read_jsonl
from eval.common.stats import load_stats
from eval.rvos import MevisDataset, RVOSConfig, run_rvos
from eval.rvos.runner import load_video_frames
from eval.rvos.synthetic import (SyntheticRVOSConfig, write_synthetic_mevis, write_synthetic_ref_davis17,
                                 write_synthetic_ref_ytvos)
from eval.rvos.synthetic_segmenter import SyntheticVideoSegmenter
from test_rvos_harness import FACTORY, write_factory_module

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools under numpy 2

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CFG = SyntheticRVOSConfig(num_videos=5, num_frames=3, height=16, width=22, num_objects=2, seed=13)
SCORES = ("J", "F", "J&F", "n_expressions", "n_videos", "n_ok", "n_no_seg", "n_failed", "visual_tokens_per_frame")


def _env(extra_path="", **extra):
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(PYTHONPATH=os.pathsep.join(p for p in (str(REPO), extra_path) if p), OMP_NUM_THREADS="1", **extra)
    return env


def _torchrun(args, extra_path=""):
    cmd = [str(BIN / "torchrun"), "--standalone", "--nproc_per_node", "2", "-m", "eval.rvos", *args]
    return subprocess.run(cmd, cwd=REPO, env=_env(extra_path), capture_output=True, text=True, timeout=120)


def _pngs(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.png"))}


def _scores(entry):
    return {k: entry[k] for k in SCORES}


def test_two_gloo_processes_reproduce_one_process(tmp_path):
    write_synthetic_mevis(tmp_path / "mevis", CFG)
    args = ["--benchmark", "mevis", "--dataset_dir", str(tmp_path / "mevis"), "--version", "ckpt", "--video-tower",
            "iv2.pt", "--num_retain_tokens", "81", "--segmenter-factory", FACTORY]
    single = run_rvos(RVOSConfig(benchmark="mevis", dataset_dir=str(tmp_path / "mevis"),
                                 results_path=str(tmp_path / "single"), checkpoint="ckpt", video_tower="iv2.pt",
                                 budget=81, segmenter_factory=FACTORY), segmenter_factory=SyntheticVideoSegmenter)
    done = _torchrun([*args, "--results_path", str(tmp_path / "dist"), "--dist-backend", "gloo"])
    assert done.returncode == 0, done.stdout + done.stderr
    (entry,) = load_stats(tmp_path / "dist")
    assert _scores(entry) == _scores(single) and entry["world_size"] == 2
    run = "mevis_valid_u_litelvlm_b81"
    assert _pngs(tmp_path / "dist" / "predictions" / run) == _pngs(tmp_path / "single" / "predictions" / run)
    ranks = [read_jsonl(p)[0] for p in sorted((tmp_path / "dist" / "records").glob("*.rank*.jsonl"))]
    videos = [{r["video"] for r in records} for records in ranks]
    assert videos == [{"video00", "video02", "video04"}, {"video01", "video03"}]  # strided shards, no repeats
    assert [r["rank"] for r in ranks[1]] == [1] * 6


def test_a_failure_on_one_rank_ends_every_rank_with_an_error(tmp_path):
    write_synthetic_mevis(tmp_path / "mevis", CFG)
    frames = load_video_frames(MevisDataset(tmp_path / "mevis"), "video03")
    factory = write_factory_module(tmp_path, "failing_on_rank1", failing_frames=[frames])
    args = ["--benchmark", "mevis", "--dataset_dir", str(tmp_path / "mevis"), "--version", "ckpt", "--video-tower",
            "iv2.pt", "--results_path", str(tmp_path / "res"), "--segmenter-factory", factory]
    done = _torchrun(args, extra_path=str(tmp_path))
    assert done.returncode != 0
    assert "[rank 1] video video03 failed" in done.stderr and "SyntheticSegmentError" in done.stderr
    assert done.stderr.count("error: 3 of 15 expressions failed in 1 video(s) (video03/0") == 2  # both ranks
    records = [r for p in (tmp_path / "res" / "records").glob("*.jsonl") for r in read_jsonl(p)[0]]
    assert sorted((r["video"], r["exp_id"]) for r in records if r["status"] == "failed") == [
        ("video03", "0"), ("video03", "1"), ("video03", "2")]


# davis with litelvlm's preset (empty masks without [SEG]): the released one refuses the fake model's no-[SEG] videos
@pytest.mark.parametrize("benchmark, writer, expected, extra", [
    ("davis", write_synthetic_ref_davis17, "davis_valid_litelvlm_b196_default", ["--preset", "default"]),
    ("ytvos", write_synthetic_ref_ytvos, "ytvos_valid_litelvlm_b196", []),
])
def test_benchmark_scripts(tmp_path, benchmark, writer, expected, extra):
    writer(tmp_path / "data", SyntheticRVOSConfig(num_videos=2, num_frames=3, height=12, width=16, seed=1))
    results = tmp_path / "run" / "LiteLVLM" / "196"
    done = subprocess.run(
        ["bash", f"scripts/eval_{benchmark}.sh", "checkpoints/VideoGLaMM", str(results), "196",
         "--segmenter-factory", FACTORY, *extra],
        cwd=REPO, env=_env(PYTHON=sys.executable, DATASET_DIR=str(tmp_path / "data"), VISION_TOWER="/my/clip",
                           VIDEO_TOWER="/my/iv2.pt"),
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    (entry,) = load_stats(results)
    assert (entry["benchmark"], entry["split"], entry["budget"], entry["run_id"]) == (benchmark, "valid", 196, expected)
    assert (entry["checkpoint"], entry["vision_tower"], entry["video_tower"]) == (
        "checkpoints/VideoGLaMM", "/my/clip", "/my/iv2.pt")
    assert (entry["J&F"] is None) == (benchmark == "ytvos") and (results / "predictions" / expected).is_dir()
    meta = json.loads((results / "records" / f"{expected}.meta.json").read_text())
    assert meta["dataset_dir"] == str(tmp_path / "data")


def test_mevis_script_with_torchrun_and_usage_errors(tmp_path):
    write_synthetic_mevis(tmp_path / "mevis", SyntheticRVOSConfig(num_videos=3, num_frames=3, height=12, width=16))
    results = tmp_path / "res"
    done = subprocess.run(
        ["bash", "scripts/eval_mevis.sh", "ckpt", str(results), "81", "--segmenter-factory", FACTORY],
        cwd=REPO, env=_env(PYTHON=sys.executable, DATASET_DIR=str(tmp_path / "mevis"), NPROC_PER_NODE="2",
                           MASTER_PORT="0", TORCHRUN_ARGS="--standalone"),
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    (entry,) = load_stats(results)
    assert entry["world_size"] == 2 and entry["split"] == "valid_u" and entry["n_expressions"] == 9
    bad = subprocess.run(["bash", "scripts/eval_mevis.sh", "only-one-arg"], cwd=REPO, env=_env(),
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "usage" in bad.stderr
    bad = subprocess.run(["bash", "scripts/eval_rvos.sh", "refcoco", "c", "r", "1"], cwd=REPO, env=_env(),
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "BENCHMARK must be davis, ytvos or mevis" in bad.stderr
