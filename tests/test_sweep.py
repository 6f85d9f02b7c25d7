"""``litelvlm sweep``: every method x budget on the synthetic data with the tiny checkpoints, one model load, a
leaderboard consistent with the runs' records, a Pareto picture, resumed runs not segmented again, bad inputs refused
before the model loads."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from eval.common.records import read_jsonl, run_record_paths
from litelvlm.cli import main

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools under numpy 2


class SegmentCounter:
    """Counts the model's loads and ``segment`` calls of one sweep (the real tiny model underneath)."""

    def __init__(self, monkeypatch, build_path: str, segmenter_cls):
        import importlib

        module, name = build_path.rsplit(".", 1)
        build = getattr(importlib.import_module(module), name)
        segment = segmenter_cls.segment
        self.loads = self.calls = 0

        def counted_build(config):
            self.loads += 1
            return build(config)

        def counted_segment(seg, *args, **kwargs):
            self.calls += 1
            return segment(seg, *args, **kwargs)

        monkeypatch.setattr(build_path, counted_build)
        monkeypatch.setattr(segmenter_cls, "segment", counted_segment)


def _image_counter(monkeypatch) -> SegmentCounter:
    from litelvlm.glamm.segmenter import GLaMMSegmenter

    return SegmentCounter(monkeypatch, "eval.refseg.model.build_segmenter", GLaMMSegmenter)


def _records(out: Path, run_id: str) -> list[dict]:
    return [r for path in run_record_paths(out / "runs", run_id) for r in read_jsonl(path)[0]]


def _md_rows(out: Path) -> list[list[str]]:
    lines = [line for line in (out / "leaderboard.md").read_text().splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[1:]]


IMAGE_SWEEP = ["sweep", "--benchmark", "synthetic", "--checkpoint", "tiny", "--method", "litelvlm", "--method", "random",
               "--method", "none", "--budget", "64", "--budget", "144", "--limit", "1"]


def test_image_sweep_writes_a_leaderboard_of_its_runs_and_resumes_without_the_model(tiny_cache, tmp_path, monkeypatch,
                                                                                     capsys):
    out = tmp_path / "sweep"
    counter = _image_counter(monkeypatch)
    assert main([*IMAGE_SWEEP, "--out", str(out)]) == 0
    stdout = capsys.readouterr().out
    assert "RANDOM weights" in stdout and "model loaded 1 time(s) for 5 runs" in stdout
    assert counter.loads == 1 and counter.calls == 1 + 5  # the warm-up, then one image, five runs (none once, at 576)

    board = json.loads((out / "leaderboard.json").read_text())
    assert board["random_weights"] and board["model"] == "GLaMM tiny" and board["data"].startswith("synthetic refcoco|val")
    rows = board["rows"]
    assert [(r["method"], r["budget"]) for r in rows] == [("litelvlm", 64), ("litelvlm", 144), ("random", 64),
                                                          ("random", 144), ("none", 576)]
    stats = {e["run_id"]: e for e in json.loads((out / "runs" / "stats.json").read_text())}
    for row in rows:
        records = _records(out, row["run_id"])
        assert row["visual_tokens"] == row["budget"] == records[0]["visual_tokens"]
        ciou = 100 * sum(r["intersection"] for r in records) / sum(r["union"] for r in records)
        assert math.isclose(row["cIoU"], ciou) and math.isclose(row["gIoU"], 100 * stats[row["run_id"]]["giou"])
        assert math.isclose(row["e2e_ms"], 1000 * records[0]["timings"]["total"])
        assert math.isclose(row["prefill_ms"], 1000 * records[0]["timings"]["llm_prefill"])
        assert row["timed"] == 1 and row["gflops"] > 0 and row["text_tokens"] > 0
    flops = {(r["method"], r["budget"]): r["gflops"] for r in rows}
    assert flops[("litelvlm", 64)] < flops[("litelvlm", 144)] < flops[("none", 576)]
    assert flops[("litelvlm", 64)] == flops[("random", 64)]  # same tokens, same count
    md = _md_rows(out)
    assert [(r[0], r[1]) for r in md] == [(r["method"], str(r["budget"])) for r in rows]
    assert [r[3] for r in md] == [f"{r['cIoU']:.2f}" for r in rows]
    assert "RANDOM WEIGHTS" in (out / "leaderboard.md").read_text()
    title = Image.open(out / "pareto.png").text["Title"]
    assert title.startswith("GLaMM tiny on synthetic refcoco|val") and "RANDOM WEIGHTS" in title

    # a rerun: every run is finished, nothing is segmented, the model is not even built
    counter = _image_counter(monkeypatch)
    assert main([*IMAGE_SWEEP, "--out", str(out)]) == 0
    assert counter.loads == 0 and counter.calls == 0
    assert "model loaded 0 time(s) for 5 runs (5 finished before)" in capsys.readouterr().out
    assert json.loads((out / "leaderboard.json").read_text())["rows"] == rows

    # a crash in the middle of one run: only its missing records are made again, the finished runs are kept
    path = run_record_paths(out / "runs", "refcoco_val_random_b144_all")[0]
    lines = path.read_text().splitlines(keepends=True)
    path.write_text(lines[0] + lines[1][:10])  # the first record and a torn second one
    counter = _image_counter(monkeypatch)
    assert main([*IMAGE_SWEEP, "--out", str(out)]) == 0
    assert counter.loads == 1 and counter.calls == 1 + 1  # the warm-up, then the missing image
    assert json.loads((out / "leaderboard.json").read_text())["rows"][3]["cIoU"] == rows[3]["cIoU"]


def test_video_sweep_scores_j_and_f_per_run(tiny_cache, tmp_path, capsys):
    out = tmp_path / "video"
    assert main(["sweep", "--benchmark", "synthetic-video", "--checkpoint", "tiny", "--method", "litelvlm",
                 "--budget", "64", "--limit", "1", "--out", str(out)]) == 0
    board = json.loads((out / "leaderboard.json").read_text())
    [row] = board["rows"]
    [entry] = json.loads((out / "runs" / "stats.json").read_text())
    assert board["model"] == "VideoGLaMM tiny" and board["data"].startswith("synthetic davis valid")
    assert math.isclose(row["J&F"], 100 * entry["J&F"]) and math.isclose(row["J"], 100 * entry["J"])
    assert row["visual_tokens"] == entry["visual_tokens_per_frame"] and row["timed"] == 1
    assert row["prefill_ms"] > 0 and row["e2e_ms"] > row["prefill_ms"] and row["gflops"] is None
    assert "RANDOM WEIGHTS" in Image.open(out / "pareto.png").text["Title"]


def _never(*args, **kwargs):
    raise AssertionError("the model must not be built for bad input")


@pytest.mark.parametrize("extra, message", [
    (["--benchmark", "synthetic", "--method", "nosuch", "--budget", "64"], "unknown pruning method 'nosuch'"),
    (["--benchmark", "synthetic", "--method", "litelvlm-time", "--budget", "64"], "does not run on images"),
    (["--benchmark", "synthetic-video", "--method", "dycoke:nosuch=1", "--budget", "64"], "bad options for method 'dycoke'"),
    (["--benchmark", "synthetic", "--method", "litelvlm"], "give at least one --budget"),
    (["--benchmark", "synthetic", "--method", "litelvlm", "--budget", "577"], "choose 1 to 576"),
    (["--benchmark", "synthetic", "--method", "litelvlm", "--budget", "0"], "positive number"),
    (["--benchmark", "cocoa", "--method", "litelvlm", "--budget", "64"], "'cocoa' is not a benchmark"),
    (["--benchmark", "refcoco|vall", "--method", "litelvlm", "--budget", "64"], "unknown split 'vall' in --benchmark"),
    (["--benchmark", "synthetic", "--split", "valid", "--method", "litelvlm", "--budget", "64"], "--split does not apply"),
    (["--benchmark", "refcoco|val", "--dataset-dir", "{tmp}/nodata", "--method", "litelvlm", "--budget", "64"],
     "nodata"),
    (["--benchmark", "synthetic-video", "--preset", "released", "--method", "litelvlm", "--budget", "99"],
     "--num_retain_tokens 99 with layout 'regrid'"),
])
def test_bad_input_is_one_line_before_the_model(tiny_cache, tmp_path, monkeypatch, capsys, extra, message):
    monkeypatch.setattr("eval.refseg.model.build_segmenter", _never)
    monkeypatch.setattr("eval.rvos.model.build_video_segmenter", _never)
    argv = ["sweep", "--checkpoint", "tiny", "--out", str(tmp_path / "out"),
            *[a.replace("{tmp}", str(tmp_path)) for a in extra]]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("litelvlm sweep: error:") and message in err and "\n" not in err
    assert not (tmp_path / "out" / "runs").exists()


def test_records_of_other_inputs_in_out_are_refused_before_the_model(tiny_cache, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("eval.refseg.model.build_segmenter", _never)
    records = tmp_path / "out" / "runs" / "records"
    records.mkdir(parents=True)
    (records / "refcoco_val_litelvlm_b64_all.meta.json").write_text(json.dumps({"checkpoint": "/another/glamm",
                                                                                "clock": "cpu"}))
    (records / "refcoco_val_litelvlm_b64_all.rank0.jsonl").write_text("")
    assert main(["sweep", "--benchmark", "synthetic", "--checkpoint", "tiny", "--method", "litelvlm", "--budget", "64",
                 "--device", "cpu", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "made with other inputs" in err and "pass another --out" in err


@pytest.mark.parametrize("recorded, fix", [("wall", "pass --clock wall or another --out"), (None, "pass another --out")])
def test_records_of_another_clock_in_out_are_refused_before_the_model(tiny_cache, tmp_path, monkeypatch, capsys,
                                                                       recorded, fix):
    monkeypatch.setattr("eval.refseg.model.build_segmenter", _never)
    records = tmp_path / "out" / "runs" / "records"
    records.mkdir(parents=True)
    meta = {} if recorded is None else {"clock": recorded}  # None: a sweep from before --clock
    (records / "refcoco_val_litelvlm_b64_all.meta.json").write_text(json.dumps(meta))
    (records / "refcoco_val_litelvlm_b64_all.rank0.jsonl").write_text("")
    assert main(["sweep", "--benchmark", "synthetic", "--checkpoint", "tiny", "--method", "litelvlm", "--budget", "64",
                 "--clock", "cpu", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert "cannot mix clocks" in err and "--clock cpu" in err and err.endswith(fix) and "\n" not in err


def test_the_default_clock_is_cpu_time_on_a_cpu_and_wall_time_on_cuda():
    from eval.sweep.clock import resolve_clock

    assert [resolve_clock(None, "cpu"), resolve_clock(None, "cuda:0"), resolve_clock("wall", "cpu")] == ["cpu", "wall", "wall"]
    with pytest.raises(ValueError, match="--clock cpu does not time the GPU's work"):
        resolve_clock("cpu", "cuda:0")


class FakeSegmenter:
    """GLaMMSegmenter's ``segment`` interface: empty masks, the stage ``llm_prefill`` running ``work(call number)``
    under a ``StageTimer`` of the default clock; notes torch's thread count and a random draw per call."""

    def __init__(self, work):
        self.work, self.calls, self.threads, self.draws = work, 0, [], []

    def segment(self, image, expressions, budget=None, method="litelvlm", **kwargs):
        import types

        import numpy as np
        import torch

        from litelvlm.timing import StageTimer

        self.calls += 1
        self.threads.append(torch.get_num_threads())
        self.draws.append(torch.rand(1).item())
        timer = StageTimer("cpu")
        with timer("llm_prefill"):
            self.work(self.calls)
        masks = np.zeros((len(expressions), *image.shape[:2]), dtype=bool)
        return types.SimpleNamespace(masks=masks, num_visual_tokens=budget or 576, timings=timer.as_dict())


def _fake_sweep(monkeypatch, out: Path, work, *extra: str) -> tuple[FakeSegmenter, dict]:
    fake = FakeSegmenter(work)
    monkeypatch.setattr("eval.refseg.model.build_segmenter", lambda config: fake)
    assert main(["sweep", "--benchmark", "synthetic", "--checkpoint", "tiny", "--method", "random", "--budget", "64",
                 "--budget", "144", "--limit", "1", "--device", "cpu", "--out", str(out), *extra]) == 0
    return fake, json.loads((out / "leaderboard.json").read_text())


def _burn_cpu(seconds: float) -> None:
    import time

    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_cpu_clock_is_the_default_on_a_cpu_recorded_per_run_and_excludes_waiting(tiny_cache, tmp_path, monkeypatch):
    import time

    from eval.common.records import meta_path

    def sleep(call):
        time.sleep(0.3)  # waiting, as for a core another process holds: wall time, no CPU time

    fake, board = _fake_sweep(monkeypatch, tmp_path / "cpu", sleep)
    assert board["clock"] == "cpu" and board["timing"] == "process CPU time, torch on 1 thread"
    assert set(fake.threads) == {1} and all(r["e2e_ms"] < 100 for r in board["rows"])
    assert "end to end CPU ms / image" in (tmp_path / "cpu" / "leaderboard.md").read_text()
    for row in board["rows"]:
        assert json.loads(meta_path(tmp_path / "cpu" / "runs", row["run_id"]).read_text())["clock"] == "cpu"

    fake, board = _fake_sweep(monkeypatch, tmp_path / "wall", sleep, "--clock", "wall")
    assert board["clock"] == "wall" and all(r["e2e_ms"] >= 300 for r in board["rows"])
    assert "end to end wall ms / image" in (tmp_path / "wall" / "leaderboard.md").read_text()
    assert json.loads(meta_path(tmp_path / "wall" / "runs", board["rows"][0]["run_id"]).read_text())["clock"] == "wall"


def test_the_first_run_does_not_pay_the_first_call(tiny_cache, tmp_path, monkeypatch):
    def slow_first_call(call):
        if call == 1:
            _burn_cpu(0.4)

    fake, board = _fake_sweep(monkeypatch, tmp_path / "out", slow_first_call)
    assert fake.calls == 1 + 2  # the warm-up, then one image per run
    assert all(r["e2e_ms"] < 200 for r in board["rows"]), [r["e2e_ms"] for r in board["rows"]]
    assert fake.draws[0] == fake.draws[1]  # the warm-up's draws are given back: the first run draws as without it
    assert "warm-up" in (tmp_path / "out" / "leaderboard.md").read_text()


@pytest.mark.parametrize("name", ["leaderboard.md", "pareto.png", "logs", "runs", "data"])
def test_a_link_planted_in_out_is_refused_before_the_model(tiny_cache, tmp_path, monkeypatch, capsys, name):
    """Every path the sweep writes in --out: a link there is one line naming it, before any work; nothing outside is
    written."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("mine")
    out = tmp_path / "out"
    out.mkdir()
    (out / name).symlink_to(outside / "keep.txt" if "." in name else outside)
    monkeypatch.setattr("eval.refseg.model.build_segmenter", _never)
    assert main(["sweep", "--benchmark", "synthetic", "--checkpoint", "tiny", "--method", "random", "--budget", "64",
                 "--device", "cpu", "--out", str(out)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and name in lines[0] and "link" in lines[0], lines
    assert sorted(p.name for p in outside.iterdir()) == ["keep.txt"] and (outside / "keep.txt").read_text() == "mine"


def test_a_link_planted_during_the_sweep_is_not_written_through(tiny_cache, tmp_path, monkeypatch, capsys):
    """The leaderboard is written through the results writer: a link that appears while the runs go is refused,
    never followed."""
    victim = tmp_path / "victim.txt"
    victim.write_text("mine")
    out = tmp_path / "out"

    def plant(call):
        if not (out / "leaderboard.md").is_symlink():
            (out / "leaderboard.md").symlink_to(victim)

    fake = FakeSegmenter(plant)
    monkeypatch.setattr("eval.refseg.model.build_segmenter", lambda config: fake)
    assert main(["sweep", "--benchmark", "synthetic", "--checkpoint", "tiny", "--method", "random", "--budget", "64",
                 "--limit", "1", "--device", "cpu", "--out", str(out)]) == 2
    assert "leaderboard.md" in capsys.readouterr().err and victim.read_text() == "mine"


def test_out_that_is_a_file_is_refused(tmp_path, capsys):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    assert main(["sweep", "--benchmark", "synthetic", "--checkpoint", "tiny", "--method", "litelvlm", "--budget", "64",
                 "--out", str(a_file)]) == 2
    assert "existing file" in capsys.readouterr().err


def test_cheap_mistakes_are_refused_before_torch_is_imported(tmp_path):
    root = Path(__file__).resolve().parents[1]
    code = ("import sys; from litelvlm.cli import main; "
            "rc = main(['sweep', '--benchmark', 'refcoco|val', '--checkpoint', 'tiny', '--method', 'nosuch', '--budget', '64', "
            f"'--out', {str(tmp_path / 'out')!r}]); print(rc, 'torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(root)})
    assert done.stdout.split() == ["2", "False"] and "unknown pruning method 'nosuch'" in done.stderr
    assert not (tmp_path / "out").exists()


def test_pareto_front_keeps_the_runs_no_other_run_beats():
    from eval.sweep.leaderboard import pareto_front

    rows = [{"method": "a", "t": 1.0, "acc": 50.0}, {"method": "b", "t": 2.0, "acc": 40.0},  # b: slower and worse
            {"method": "c", "t": 3.0, "acc": 60.0}, {"method": "d", "t": 3.0, "acc": 55.0},  # d: as slow as c, worse
            {"method": "e", "t": None, "acc": 99.0}]  # not timed: not on the front
    assert [r["method"] for r in pareto_front(rows, "t", "acc")] == ["a", "c"]


def test_readme_compare_methods_command_and_picture():
    import shlex

    from litelvlm.cli import build_parser

    root = Path(__file__).resolve().parents[1]
    section = (root / "README.md").read_text().split("## Compare methods", 1)[1]
    command = section.split("```bash", 1)[1].split("```", 1)[0].replace("\\\n", " ")
    args = build_parser().parse_args(shlex.split(command)[1:])
    assert (args.command, args.benchmark, args.checkpoint) == ("sweep", "synthetic", "tiny")
    picture = section.split("](", 1)[1].split(")", 1)[0]
    assert picture == "docs/sweep_synthetic.png" and "RANDOM WEIGHTS" in Image.open(root / picture).text["Title"]


def test_the_rvos_benchmark_names_are_the_harness_s():
    from eval.rvos.config import BENCHMARKS
    from eval.sweep.plan import RVOS_BENCHMARKS

    assert sorted(RVOS_BENCHMARKS) == sorted(BENCHMARKS)
