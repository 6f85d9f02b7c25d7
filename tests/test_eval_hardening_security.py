"""Crafted benchmark files and concurrent runs against the command lines of the harnesses: names from
meta_expressions.json never make a run write, delete or zip anything outside its results folder, and a second run
of the same run into one results folder is refused while the first holds it. Only the command-line entry points
are used here, so these tests also run against older versions of the harnesses."""

import json
import os
import re
import threading
import zipfile
from pathlib import Path

import pytest

from eval.common.records import read_jsonl
from eval.common.stats import load_stats
from eval.rvos.cli import main as rvos_main
from eval.rvos.synthetic import (SyntheticRVOSConfig, write_synthetic_mevis, write_synthetic_predictions,
                                 write_synthetic_ref_ytvos)
from eval.rvos.synthetic_segmenter import SyntheticVideoSegmenter

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools under numpy 2

CFG = SyntheticRVOSConfig(num_videos=2, num_frames=3, height=16, width=20, num_objects=2, seed=5)
FACTORY = "eval.rvos.synthetic_segmenter:SyntheticVideoSegmenter"
RUN = "mevis_valid_u_litelvlm_b576"


def _tree(folder):
    """Every file under ``folder`` with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(Path(folder).rglob("*")) if p.is_file()}


def _victim(tmp_path):
    victim = tmp_path / "victim"
    for exp_id in ("0", "1", "2"):
        (victim / exp_id).mkdir(parents=True)
        (victim / exp_id / "keep.txt").write_text(f"precious {exp_id}")
    (victim / "notes.txt").write_text("do not touch")
    return victim, _tree(victim)


def _edit_meta(path, change):
    data = json.loads(path.read_text())
    change(data["videos"])
    path.write_text(json.dumps(data))


def _model_argv(dataset_dir, results, *extra):
    return ["--benchmark", "mevis", "--dataset_dir", str(dataset_dir), "--results_path", str(results), "--version",
            "ckpt", "--video-tower", "iv2.pt", "--segmenter-factory", FACTORY, *extra]


def _one_error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_an_absolute_video_id_deletes_nothing_outside(tmp_path, capsys):
    write_synthetic_mevis(tmp_path / "mevis", CFG)
    victim, before = _victim(tmp_path)
    # the video's frames are absent, so its segmentation fails and a failed video's mask folders get removed
    _edit_meta(tmp_path / "mevis" / "valid_u" / "meta_expressions.json",
               lambda videos: videos.update({str(victim): videos.pop("video01")}))
    assert rvos_main(_model_argv(tmp_path / "mevis", tmp_path / "res")) == 2
    line = _one_error_line(capsys)
    assert "video id" in line and repr(str(victim)) in line and "path separator" in line
    assert _tree(victim) == before
    assert not (tmp_path / "res" / "records").exists()  # refused before any work


def test_a_dotdot_expression_id_writes_nothing_outside(tmp_path, capsys):
    write_synthetic_mevis(tmp_path / "mevis", CFG)
    victim, before = _victim(tmp_path)
    results = tmp_path / "res"
    escape = os.path.relpath(victim, results / "predictions" / RUN / "video00")  # ../../../../victim
    assert escape.startswith("..")
    _edit_meta(tmp_path / "mevis" / "valid_u" / "meta_expressions.json",
               lambda videos: videos["video00"]["expressions"].update(
                   {escape: videos["video00"]["expressions"].pop("1")}))
    assert rvos_main(_model_argv(tmp_path / "mevis", results)) == 2
    line = _one_error_line(capsys)
    assert "expression id" in line and repr(escape) in line
    assert _tree(victim) == before
    assert not (results / "predictions").exists()


def test_a_dotdot_frame_name_writes_nothing_outside(tmp_path, capsys):
    dataset = tmp_path / "d1" / "d2" / "d3" / "mevis"
    write_synthetic_mevis(dataset, CFG)
    victim, before = _victim(tmp_path)
    results = tmp_path / "res"
    frame = os.path.relpath(victim / "evil", results / "predictions" / RUN / "video00" / "0")
    # give the crafted frame name a readable JPEG, so the model would run and write its mask
    image = Path(os.path.normpath(dataset / "valid_u" / "JPEGImages" / "video00" / f"{frame}.jpg"))
    assert tmp_path in image.parents
    image.parent.mkdir(parents=True, exist_ok=True)
    image.write_bytes((dataset / "valid_u" / "JPEGImages" / "video00" / "00002.jpg").read_bytes())
    _edit_meta(dataset / "valid_u" / "meta_expressions.json",
               lambda videos: videos["video00"]["frames"].__setitem__(2, frame))
    assert rvos_main(_model_argv(dataset, results)) == 2
    line = _one_error_line(capsys)
    assert "frame name" in line and repr(frame) in line
    assert _tree(victim) == before and not (victim / "evil.png").exists()


def test_no_zip_slip_entries(tmp_path, capsys):
    synth = write_synthetic_ref_ytvos(tmp_path / "yt", SyntheticRVOSConfig(num_videos=2, num_frames=2, height=8,
                                                                            width=10, frame_step=5, seed=1))
    pred = tmp_path / "p1" / "p2" / "pred"
    write_synthetic_predictions(synth, pred)
    escape = "../../../x"  # pred/video00/../../../x = tmp_path/p1/x
    (pred / "video00" / "1").rename(tmp_path / "p1" / "x")
    _edit_meta(tmp_path / "yt" / "meta_expressions" / "valid" / "meta_expressions.json",
               lambda videos: videos["video00"]["expressions"].update(
                   {escape: videos["video00"]["expressions"].pop("1")}))
    results = tmp_path / "res"
    argv = ["--benchmark", "ytvos", "--dataset_dir", str(tmp_path / "yt"), "--results_path", str(results),
            "--predictions", str(pred)]
    assert rvos_main(argv) == 2
    line = _one_error_line(capsys)
    assert "expression id" in line and repr(escape) in line
    for path in results.rglob("*.zip"):
        with zipfile.ZipFile(path) as zf:
            assert not [n for n in zf.namelist() if ".." in n.split("/")]
    assert not load_stats(results)


# ---------------------------------------------------------------- one run at a time per results folder


class _Gate:
    """Blocks the first ``segment`` call of one run until released; counts the calls of all runs."""

    def __init__(self):
        self.started, self.go, self.calls = threading.Event(), threading.Event(), []

    def factory(self, blocking):
        gate = self

        class Gated(SyntheticVideoSegmenter):
            def segment(self, frames, expressions, *args, **kwargs):
                gate.calls.append(len(expressions))
                if blocking:
                    gate.started.set()
                    assert gate.go.wait(60), "the test never released the first run"
                return super().segment(frames, expressions, *args, **kwargs)

        return Gated


def test_two_concurrent_resumes_of_one_run_the_second_is_refused(tmp_path, capsys):
    write_synthetic_mevis(tmp_path / "mevis", SyntheticRVOSConfig(num_videos=3, num_frames=3, height=12, width=16))
    results = tmp_path / "res"
    argv = _model_argv(tmp_path / "mevis", results)
    assert rvos_main(argv + ["--limit", "1"]) == 0  # a partial run to resume
    capsys.readouterr()
    gate, outcome = _Gate(), {}
    first = threading.Thread(target=lambda: outcome.update(
        rc=rvos_main(argv + ["--resume"], segmenter_factory=gate.factory(blocking=True))))
    first.start()
    try:
        assert gate.started.wait(60)
        assert rvos_main(argv + ["--resume"], segmenter_factory=gate.factory(blocking=False)) == 2
    finally:
        gate.go.set()
        first.join(60)
    assert outcome["rc"] == 0
    captured = capsys.readouterr().err
    errors = re.findall(r"error: [^\r\n]*", captured)  # the first run's progress bar shares stderr
    assert len(errors) == 1, captured
    assert f"results folder {results} is in use by another run of {RUN}" in errors[0]
    assert f"pid {os.getpid()}" in errors[0] and "--results_path" in errors[0]
    assert gate.calls == [3, 3]  # only the first run segmented (the two remaining videos)
    records = [r for p in (results / "records").glob("*.jsonl") for r in read_jsonl(p)[0]]
    assert len(records) == len({(r["video"], r["exp_id"]) for r in records}) == 9  # no duplicates
    assert rvos_main(argv + ["--resume"]) == 0  # and the folder still resumes
    assert [e["n_expressions"] for e in load_stats(results)] == [3, 9]  # the finished run is not appended twice
