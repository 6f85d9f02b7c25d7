"""Two CPU processes (torchrun, gloo) reproduce the single-process numbers; the shell scripts drive the harness."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from eval.common.stats import load_stats
from eval.refseg import RefSegConfig, run_refseg
from eval.refseg.synthetic import SyntheticSegmenter, write_synthetic_refer

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
FACTORY = "eval.refseg.synthetic:SyntheticSegmenter"
SCORE_FIELDS = ("giou", "ciou", "n_expressions", "n_images", "sum_intersection", "sum_union")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_synthetic_refer(tmp_path_factory.mktemp("refer"), datasets=("refcoco", "refcoco+", "refcocog"),
                                 images_per_split=3, seed=11)


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", **extra)
    return env


def _torchrun(args):
    cmd = [str(BIN / "torchrun"), "--standalone", "--nproc_per_node", "2", "-m", "eval.refseg", *args]
    done = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def _scores(entry):
    return {k: entry[k] for k in SCORE_FIELDS}


def _read(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_two_gloo_processes_reproduce_the_single_process_run(data, tmp_path):
    common = ["--dataset_dir", str(data.dataset_dir), "--refer_seg_data", "refcoco|val", "--version", "ckpt",
              "--num_retain_tokens", "128", "--protocol", "glamm", "--seed", "5", "--segmenter-factory", FACTORY]
    single = run_refseg(RefSegConfig(refer_seg_data="refcoco|val", dataset_dir=str(data.dataset_dir),
                                     results_path=str(tmp_path / "single"), checkpoint="ckpt", budget=128,
                                     protocol="glamm", seed=5, segmenter_factory=FACTORY),
                        segmenter_factory=SyntheticSegmenter)
    _torchrun([*common, "--results_path", str(tmp_path / "dist"), "--dist-backend", "gloo"])
    (entry,) = load_stats(tmp_path / "dist")
    assert _scores(entry) == _scores(single) and entry["world_size"] == 2
    ranks = [_read(p) for p in sorted((tmp_path / "dist" / "records").glob("*.rank*.jsonl"))]
    assert len(ranks) == 2 and all(ranks)
    images = [{r["image_id"] for r in records} for records in ranks]
    assert not images[0] & images[1]  # each image on exactly one rank, none repeated
    keys = sorted((r["ref_id"], r["sent_id"]) for records in ranks for r in records)
    (single_records,) = (tmp_path / "single" / "records").glob("*.jsonl")
    assert keys == sorted((r["ref_id"], r["sent_id"]) for r in _read(single_records))


def test_two_process_resume_of_a_single_process_partial_run(data, tmp_path):
    common = ["--dataset_dir", str(data.dataset_dir), "--refer_seg_data", "refcocog|val", "--version", "ckpt",
              "--results_path", str(tmp_path / "res"), "--segmenter-factory", FACTORY]
    full = run_refseg(RefSegConfig(refer_seg_data="refcocog|val", dataset_dir=str(data.dataset_dir),
                                   results_path=str(tmp_path / "full"), checkpoint="ckpt", segmenter_factory=FACTORY),
                      segmenter_factory=SyntheticSegmenter)
    from eval.refseg.cli import main

    assert main([*common, "--limit", "1"]) == 0
    _torchrun([*common, "--resume"])
    partial, resumed = load_stats(tmp_path / "res")
    assert partial["n_images"] == 1 and _scores(resumed) == _scores(full)


def test_single_evaluation_script(data, tmp_path):
    results = tmp_path / "run" / "LiteLVLM" / "192"
    done = subprocess.run(
        ["bash", "scripts/single_evaluation.sh", "checkpoints/GLaMM-RefSeg", "refcoco+|testA", str(results), "192",
         "--segmenter-factory", FACTORY],
        cwd=REPO, env=_env(PYTHON=sys.executable, DATASET_DIR=str(data.dataset_dir), VISION_TOWER="/my/clip"),
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    (entry,) = load_stats(results)
    expected = run_refseg(RefSegConfig(refer_seg_data="refcoco+|testA", dataset_dir=str(data.dataset_dir),
                                       results_path=str(tmp_path / "direct"), checkpoint="checkpoints/GLaMM-RefSeg",
                                       budget=192), segmenter_factory=SyntheticSegmenter)
    assert _scores(entry) == _scores(expected)
    assert (entry["dataset"], entry["split"], entry["budget"]) == ("refcoco+", "testA", 192)
    assert entry["checkpoint"] == "checkpoints/GLaMM-RefSeg" and entry["vision_tower"] == "/my/clip"
    assert "cIoU %" in done.stdout


def test_run_evaluation_script_covers_the_eight_splits(data, tmp_path):
    empty = tmp_path / "none.jsonl"
    empty.write_text("")
    done = subprocess.run(
        ["bash", "scripts/run_evaluation.sh", "ckpt", str(tmp_path / "res"), "64", "--predictions", str(empty),
         "--allow-missing"],
        cwd=REPO, env=_env(PYTHON=sys.executable, DATASET_DIR=str(data.dataset_dir)),
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    entries = load_stats(tmp_path / "res")
    assert [(e["dataset"], e["split"]) for e in entries] == [
        ("refcoco", "val"), ("refcoco", "testA"), ("refcoco", "testB"), ("refcoco+", "val"), ("refcoco+", "testA"),
        ("refcoco+", "testB"), ("refcocog", "val"), ("refcocog", "test")]
    assert all(e["budget"] == 64 and e["ciou"] == 0.0 for e in entries)  # empty predictions
    assert done.stdout.count("refcoco+ |") >= 3  # the final stats table
    bad = subprocess.run(["bash", "scripts/run_evaluation.sh", "only-one-arg"], cwd=REPO, env=_env(),
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "usage" in bad.stderr
