"""Robust RVOS runs: interruptions (crash, --limit, torn JSONL line) resume to the uninterrupted numbers, failing
videos are recorded with their tracebacks and retried on --resume, stale state is refused."""

import shutil
import sys

import numpy as np
import pytest

from eval.common.records import RecordStore, read_jsonl
from eval.common.stats import load_stats
from eval.rvos import MevisDataset, RVOSConfig, run_rvos
from eval.rvos.cli import main
from eval.rvos.report import SampleFailuresError
from eval.rvos.runner import load_video_frames
from eval.rvos.synthetic import SyntheticRVOSConfig, write_synthetic_mevis
from eval.rvos.synthetic_segmenter import SyntheticVideoSegmenter
from test_rvos_harness import FACTORY, MODEL_ARGS, rvos_argv, write_factory_module
from test_rvos_scoring import ref_mevis

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools under numpy 2

CFG = SyntheticRVOSConfig(num_videos=4, num_frames=4, height=18, width=26, num_objects=2, seed=7)
SCORES = ("J", "F", "J&F", "n_expressions", "n_videos", "n_ok", "n_no_seg", "visual_tokens_per_frame")
RUN = "mevis_valid_u_litelvlm_b128"


@pytest.fixture(scope="module")
def mevis(tmp_path_factory):
    return write_synthetic_mevis(tmp_path_factory.mktemp("mevis"), CFG)


@pytest.fixture(scope="module")
def full(mevis, tmp_path_factory):
    """The uninterrupted run: its stats entry and results folder."""
    results = tmp_path_factory.mktemp("full")
    return run_rvos(_config(mevis, results), segmenter_factory=SyntheticVideoSegmenter), results


def _config(mevis, results, **kw):
    base = dict(benchmark="mevis", dataset_dir=str(mevis.root), results_path=str(results), checkpoint="ckpt",
                video_tower="iv2.pt", budget=128, segmenter_factory=FACTORY)
    return RVOSConfig(**{**base, **kw})


def _scores(entry):
    return {k: entry[k] for k in SCORES}


def _records(results):
    return [r for p in sorted((results / "records").glob("*.jsonl")) for r in read_jsonl(p)[0]]


def _png_bytes(results):
    folder = results / "predictions" / RUN
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.png"))}


class Interrupt(BaseException):
    """Stands for a killed process: not an Exception, so the harness must not record it as a sample failure."""


class CountingSegmenter(SyntheticVideoSegmenter):
    """Counts calls per instance; ``crash_at`` raises Interrupt on that call number."""

    crash_at = None

    def segment(self, *args, **kwargs):
        if self.calls + 1 == self.crash_at:
            raise Interrupt()
        return super().segment(*args, **kwargs)


def test_crash_and_torn_line_resume_to_the_uninterrupted_numbers(mevis, full, tmp_path):
    entry, full_dir = full
    config = _config(mevis, tmp_path)
    crashing = type("Crashing", (CountingSegmenter,), {"crash_at": 3})
    with pytest.raises(Interrupt):
        run_rvos(config, segmenter_factory=crashing)
    (records_file,) = (tmp_path / "records").glob("*.rank0.jsonl")
    assert len(read_jsonl(records_file)[0]) == 6  # two videos done
    with open(records_file, "a") as handle:
        handle.write('{"video": "video02", "exp_id": "0", "sta')  # torn line of an interrupted write
    with pytest.raises(FileExistsError, match="pass --resume"):
        run_rvos(config, segmenter_factory=SyntheticVideoSegmenter)
    made = []

    def factory(cfg):
        made.append(CountingSegmenter(cfg))
        return made[-1]

    resumed = run_rvos(_config(mevis, tmp_path, resume=True), segmenter_factory=factory)
    assert _scores(resumed) == _scores(entry)
    assert made[0].calls == 2 and resumed["videos_segmented_this_run"] == 2  # finished videos are not redone
    assert _png_bytes(tmp_path) == _png_bytes(full_dir)
    assert len(_records(tmp_path)) == entry["n_expressions"]


def test_limit_then_resume_and_a_cut_inside_a_video(mevis, full, tmp_path):
    entry, full_dir = full
    limited = run_rvos(_config(mevis, tmp_path / "a", limit=1), segmenter_factory=SyntheticVideoSegmenter)
    assert limited["n_videos"] == 1 and limited["n_expressions"] == 3
    resumed = run_rvos(_config(mevis, tmp_path / "a", resume=True), segmenter_factory=SyntheticVideoSegmenter)
    assert _scores(resumed) == _scores(entry) and resumed["videos_segmented_this_run"] == CFG.num_videos - 1
    # the full run's records without two of video01's expressions, plus a torn line; their masks deleted
    shutil.copytree(full_dir / "records", tmp_path / "b" / "records")
    shutil.copytree(full_dir / "predictions", tmp_path / "b" / "predictions")
    (records_file,) = (tmp_path / "b" / "records").glob("*.rank0.jsonl")
    lines = records_file.read_text().splitlines(keepends=True)
    records_file.write_text("".join(lines[:4] + lines[6:]) + lines[4][:20])  # video01/1 and /2 lost
    for exp_id in ("1", "2"):  # an answer without [SEG] has no folder (released no_seg: skip)
        shutil.rmtree(tmp_path / "b" / "predictions" / RUN / "video01" / exp_id, ignore_errors=True)
    calls = []

    class Recording(SyntheticVideoSegmenter):
        def segment(self, frames, expressions, *args, **kwargs):
            calls.append(list(expressions))
            return super().segment(frames, expressions, *args, **kwargs)

    again = run_rvos(_config(mevis, tmp_path / "b", resume=True), segmenter_factory=Recording)
    assert _scores(again) == _scores(entry)
    assert len(calls) == 1 and len(calls[0]) == 3  # the video is segmented whole, as in the uninterrupted run
    assert [(r["video"], r["exp_id"]) for r in read_jsonl(records_file)[0][-2:]] == [("video01", "1"), ("video01", "2")]
    assert _png_bytes(tmp_path / "b") == _png_bytes(full_dir)


def _failing_factory(mevis, tmp_path, monkeypatch, name, **kw):
    monkeypatch.syspath_prepend(str(tmp_path))
    frames = load_video_frames(MevisDataset(mevis.root), "video01")
    return write_factory_module(tmp_path, name, failing_frames=[frames], **kw)


def test_failures_are_recorded_with_traceback_reported_and_retried(mevis, full, tmp_path, monkeypatch, capsys):
    entry, _ = full
    failing = _failing_factory(mevis, tmp_path, monkeypatch, "failing_factory_a")
    argv = rvos_argv("mevis", mevis.root, tmp_path / "res", "--version", "ckpt", "--video-tower", "iv2.pt",
                     "--num_retain_tokens", "128", "--segmenter-factory", failing)
    assert main(argv) == 1
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: 3 of 12 expressions failed in 1 video(s) (video01/0, video01/1, video01/2)")
    assert "SyntheticSegmentError: synthetic failure" in last and "--resume" in last and "--allow-missing" in last
    assert "Traceback (most recent call last)" in err and "3 failed expressions" in err  # logged and summarised
    records = {(r["video"], r["exp_id"]): r for r in _records(tmp_path / "res")}
    failed = [r for r in records.values() if r["status"] == "failed"]
    assert [(r["video"], r["exp_id"]) for r in failed] == [("video01", "0"), ("video01", "1"), ("video01", "2")]
    assert all("Traceback (most recent call last)" in r["traceback"] and "SyntheticSegmentError" in r["traceback"]
               and r["attempt"] == 1 for r in failed)
    assert all(r["status"] in ("ok", "no_seg") for k, r in records.items() if k[0] != "video01")
    assert not (tmp_path / "res" / "predictions" / RUN / "video01").exists()
    assert not load_stats(tmp_path / "res")  # nothing scored without --allow-missing
    # retried and failing again, scored by the official missing-prediction rule on request: exit 1, but an entry with the failures
    assert main(argv + ["--resume", "--allow-missing"]) == 1
    (partial,) = load_stats(tmp_path / "res")
    j, f, _ = ref_mevis(mevis.root / "valid_u", tmp_path / "res" / "predictions" / RUN)
    assert partial["n_failed"] == 3 and partial["missing"]["videos"] == 1
    assert partial["J"] == pytest.approx(j, abs=1e-6) and partial["F"] == pytest.approx(f, abs=1e-6)
    # a working model on --resume retries only the failed video and reaches the uninterrupted numbers
    good = argv[:-1] + [FACTORY, "--resume"]
    assert main(good) == 2 and "other inputs" in capsys.readouterr().err  # a different factory is refused
    write_factory_module(tmp_path, "failing_factory_a")  # the same factory, now healthy
    monkeypatch.delitem(sys.modules, "failing_factory_a")
    assert main(argv + ["--resume"]) == 0
    final = load_stats(tmp_path / "res")[-1]
    assert _scores(final) == _scores(entry) and final["n_failed"] == 0 and final["videos_segmented_this_run"] == 1
    attempts = {r["attempt"] for r in _records(tmp_path / "res") if r["video"] == "video01"}
    assert attempts == {1, 2, 3}


def test_a_bad_model_output_is_a_recorded_failure(mevis, tmp_path, monkeypatch):
    bad = _failing_factory(mevis, tmp_path, monkeypatch, "bad_shape_factory", bad_shape=True)
    with pytest.raises(SampleFailuresError, match="12 of 12 expressions failed") as err:
        run_rvos(_config(mevis, tmp_path / "res", segmenter_factory=bad))
    assert err.value.entry is None
    records = _records(tmp_path / "res")
    assert len(records) == 12 and all(r["status"] == "failed" for r in records)
    shape_errors = [r for r in records if r["video"] != "video01"]
    assert all("segmenter returned masks of shape (3, 4, 17, 26)" in r["error"] for r in shape_errors)
    assert all("SyntheticSegmentError" in r["error"] for r in records if r["video"] == "video01")


def test_stale_predictions_and_changed_inputs_are_refused(mevis, full, tmp_path):
    _, full_dir = full
    shutil.copytree(full_dir / "predictions", tmp_path / "predictions")
    with pytest.raises(FileExistsError, match="already holds masks but the run has no records"):
        run_rvos(_config(mevis, tmp_path), segmenter_factory=SyntheticVideoSegmenter)
    shutil.copytree(full_dir / "records", tmp_path / "x" / "records")
    with pytest.raises(ValueError, match="other inputs .*checkpoint"):
        run_rvos(_config(mevis, tmp_path / "x", resume=True, checkpoint="other"),
                 segmenter_factory=SyntheticVideoSegmenter)


def test_completeness_check_catches_masks_deleted_after_recording(mevis, full, tmp_path, capsys):
    entry, full_dir = full
    shutil.copytree(full_dir, tmp_path, dirs_exist_ok=True)
    (tmp_path / "predictions" / RUN / "video03" / "1" / "00002.png").unlink()
    argv = rvos_argv("mevis", mevis.root, tmp_path, *MODEL_ARGS, "--num_retain_tokens", "128", "--resume")
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: predictions under") and "1 missing frames (e.g. video03/1/00002.png)" in err[-1]


def test_record_store_lets_a_larger_attempt_supersede(tmp_path):
    keys = ("video", "exp_id")
    mine, other = tmp_path / "r.rank0.jsonl", tmp_path / "r.rank1.jsonl"
    with RecordStore(other, keys, supersede_field="attempt") as store:
        store.add({"video": "v", "exp_id": "0", "attempt": 1, "status": "failed"})
    with RecordStore(mine, keys, resume=True, other_paths=[other], supersede_field="attempt") as store:
        with pytest.raises(ValueError, match="already"):
            store.add({"video": "v", "exp_id": "0", "attempt": 1, "status": "ok"})
        store.add({"video": "v", "exp_id": "0", "attempt": 2, "status": "ok"})
        assert store.get(("v", "0"))["status"] == "ok"
    for order in ([mine, other], [other, mine]):
        store = RecordStore(order[0], keys, resume=True, other_paths=order[1:], supersede_field="attempt")
        assert store.get(("v", "0"))["attempt"] == 2 and len(store) == 1
        store.close()
    with pytest.raises(ValueError, match="appears twice"):  # without the field, duplicates stay an error
        RecordStore(mine, keys, resume=True, other_paths=[other])
    assert np.array_equal([r["attempt"] for r in read_jsonl(mine)[0]], [2])
