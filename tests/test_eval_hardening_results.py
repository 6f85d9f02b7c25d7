"""The results folder against planted links, full disks and read-only folders, and datasets laid out with links:

* a symbolic link planted where a run writes (a lock, stats.json, records/, predictions/, scores, the submission zip)
  stops the run before any work with one line naming the link, and its target stays untouched (both harnesses);
* a failed write (disk full, read-only) stops the run at once with one line, and ``--resume`` then reaches the
  numbers of an uninterrupted run;
* a finished run's stats entry is written once, whatever resumes follow; files get the mode the umask gives;
* symbolic links inside a dataset (video folder, frame, DAVIS annotation folder, COCO image) are read through.
Only the command-line entry points are used for the runs."""

import errno
import json
import os
import re
import shutil
import stat
import tempfile
from pathlib import Path

import pytest
from PIL import Image

from eval.common.records import RecordStore, read_jsonl
from eval.common.stats import append_stats, load_stats
from eval.common.writer import (ResultsLinkError, ResultsWriteError, check_no_links, open_results_fd,
                                write_results_file)
from eval.refseg.cli import main as refseg_main
from eval.refseg.synthetic import SyntheticSegmenter, write_synthetic_refer
from eval.rvos.cli import main as rvos_main
from eval.rvos.synthetic import (SyntheticRVOSConfig, write_synthetic_mevis, write_synthetic_predictions,
                                 write_synthetic_ref_davis17, write_synthetic_ref_ytvos)
from eval.rvos.synthetic_segmenter import SyntheticVideoSegmenter

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools under numpy 2

CFG = SyntheticRVOSConfig(num_videos=3, num_frames=3, height=12, width=16, num_objects=2, frame_step=5, seed=4)
YT_RUN = "ytvos_valid_litelvlm_b576"
MEVIS_RUN = "mevis_valid_u_litelvlm_b576"
REFSEG_RUN = "refcoco_val_litelvlm_b576_all"


class Counting:
    """Segmenter factories that count the model calls of a run."""

    def __init__(self):
        self.calls = 0

    def video(self, config):
        counter = self

        class Counted(SyntheticVideoSegmenter):
            def segment(self, *args, **kwargs):
                counter.calls += 1
                return super().segment(*args, **kwargs)

        return Counted(config)

    def image(self, config):
        counter = self

        class Counted(SyntheticSegmenter):
            def segment(self, *args, **kwargs):
                counter.calls += 1
                return super().segment(*args, **kwargs)

        return Counted(config)


def _rvos(benchmark, dataset_dir, results, factory, *extra):
    argv = ["--benchmark", benchmark, "--dataset_dir", str(dataset_dir), "--results_path", str(results),
            "--version", "ckpt", "--video-tower", "iv2.pt", *extra]
    return rvos_main(argv, segmenter_factory=factory)


def _refseg(dataset_dir, results, factory, *extra):
    argv = ["--dataset_dir", str(dataset_dir), "--refer_seg_data", "refcoco|val", "--results_path", str(results),
            "--version", "ckpt", *extra]
    return refseg_main(argv, segmenter_factory=factory)


def _error_line(err):
    """The single ``error:`` line of a run's stderr (a progress bar may share it), and no traceback."""
    errors = re.findall(r"error: [^\r\n]*", err)
    assert len(errors) == 1 and "Traceback" not in err, err
    return errors[0]


@pytest.fixture(scope="module")
def ytvos(tmp_path_factory):
    return write_synthetic_ref_ytvos(tmp_path_factory.mktemp("yt"), CFG).root


@pytest.fixture(scope="module")
def mevis(tmp_path_factory):
    return write_synthetic_mevis(tmp_path_factory.mktemp("mevis"), CFG).root


@pytest.fixture(scope="module")
def refer(tmp_path_factory):
    return write_synthetic_refer(tmp_path_factory.mktemp("refer"), datasets=("refcoco",), images_per_split=4,
                                 seed=2).dataset_dir


# ---------------------------------------------------------------- item 3: links planted in the results folder


def _victim(tmp_path, kind):
    """A file or an empty folder outside the results folder, or (``dangling``) a path that must stay absent."""
    target = tmp_path / "victim"
    if kind == "file":
        target.write_text("precious\n")
    elif kind == "folder":
        target.mkdir()
    return target


def _victim_state(target):
    if target.is_dir():
        return sorted(str(p.relative_to(target)) for p in target.rglob("*"))
    return target.read_bytes() if target.exists() else None


PLANTED = [
    # (harness, link inside the results folder, what it points at, the run resumes an earlier partial run)
    ("rvos", ".stats.json.lock", "file", False),
    ("refseg", ".stats.json.lock", "file", False),
    ("rvos", "stats.json", "file", False),
    ("rvos", f".{YT_RUN}.lock", "file", False),
    ("rvos", f"submissions/{YT_RUN}.zip", "file", False),
    ("rvos", f"scores/{YT_RUN}.json", "file", False),
    ("rvos", "predictions", "folder", False),
    ("rvos", f"predictions/{YT_RUN}", "folder", False),
    ("rvos", "records", "folder", False),
    ("refseg", "records", "folder", False),
    ("rvos", f"records/{YT_RUN}.rank0.jsonl", "dangling", True),
    ("refseg", f"records/{REFSEG_RUN}.rank0.jsonl", "dangling", True),
]


@pytest.mark.parametrize("harness, link, kind, resume", PLANTED, ids=[f"{h}:{l}" for h, l, _, _ in PLANTED])
def test_a_planted_link_stops_the_run_before_any_work(tmp_path, capsys, ytvos, refer, harness, link, kind, resume):
    results = tmp_path / "res"
    counter = Counting()
    run = ((lambda *extra: _rvos("ytvos", ytvos, results, counter.video, *extra)) if harness == "rvos" else
           (lambda *extra: _refseg(refer, results, counter.image, *extra)))
    if resume:  # a partial run whose own records file is then replaced by a dangling link
        assert run("--limit", "1") == 0
        (results / link).unlink()
        counter.calls = 0
    target = _victim(tmp_path, kind)
    before = _victim_state(target)
    (results / link).parent.mkdir(parents=True, exist_ok=True)
    (results / link).symlink_to(target)
    capsys.readouterr()
    assert run(*(["--resume"] if resume else [])) == 2
    line = _error_line(capsys.readouterr().err)
    assert f"{results / link} is a symbolic link (to {target})" in line and "--results_path" in line
    assert counter.calls == 0  # refused before the model
    assert _victim_state(target) == before and os.path.islink(results / link)


def test_a_link_met_while_writing_masks_stops_the_run_at_once(tmp_path, capsys, ytvos):
    """A link deeper than the checks made up front (planted in a video's predictions folder) is refused by the
    write itself: the run stops there, nothing is recorded as a failed video, the target stays untouched."""
    results = tmp_path / "res"
    victim = _victim(tmp_path, "folder")
    folder = results / "predictions" / YT_RUN / "video01"
    folder.parent.mkdir(parents=True)
    folder.symlink_to(victim)
    (results / "records").mkdir()
    (results / "records" / f"{YT_RUN}.rank0.jsonl").write_text("")  # so the non-empty predictions folder resumes
    counter = Counting()
    assert _rvos("ytvos", ytvos, results, counter.video, "--resume") == 2
    line = _error_line(capsys.readouterr().err)
    assert f"{folder} is a symbolic link (to {victim})" in line
    assert counter.calls == 2 and os.listdir(victim) == []
    records = read_jsonl(results / "records" / f"{YT_RUN}.rank0.jsonl")[0]
    assert records and all(r["video"] == "video00" and r["status"] in ("ok", "no_seg") for r in records)


def test_writes_refuse_links_hard_links_and_non_files(tmp_path):
    root = tmp_path / "res"
    root.mkdir()
    outside = tmp_path / "outside.txt"
    outside.write_text("keep")
    (root / "link.json").symlink_to(outside)
    with pytest.raises(ResultsLinkError, match=r"link.json is a symbolic link \(to .*outside.txt\)"):
        write_results_file(root, root / "link.json", "{}")
    with pytest.raises(ResultsLinkError, match="symbolic link"):
        open_results_fd(root, root / "link.json", os.O_WRONLY | os.O_APPEND)
    os.link(outside, root / "hard.jsonl")
    with pytest.raises(ResultsLinkError, match="has 2 hard links"):
        open_results_fd(root, root / "hard.jsonl", os.O_WRONLY | os.O_APPEND)
    os.mkfifo(root / "fifo")
    with pytest.raises(ResultsLinkError, match="fifo in the results folder .* is not a regular file"):
        open_results_fd(root, root / "fifo", os.O_WRONLY | os.O_CREAT)
    (root / "sub").symlink_to(tmp_path)
    with pytest.raises(ResultsLinkError, match="sub is a symbolic link"):
        check_no_links(root, ["sub/deeper/file.json"])
    check_no_links(root, ["missing/file.json"])  # what does not exist yet is fine
    assert outside.read_text() == "keep" and not (tmp_path / "deeper").exists()
    write_results_file(root, root / "a" / "b.json", "{}")  # folders made on the way
    assert (root / "a" / "b.json").read_text() == "{}"


# ---------------------------------------------------------------- item 5: a disk that fills, a read-only folder


def _fail_os_writes(monkeypatch, prefix, after):
    """``os.write`` raises ENOSPC for the writes of data starting with ``prefix`` after the first ``after``."""
    real, seen = os.write, []

    def write(fd, data):
        if bytes(data[:len(prefix)]) == prefix:
            seen.append(1)
            if len(seen) > after:
                raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, data)

    monkeypatch.setattr(os, "write", write)


def _scores(results, run):
    return json.loads((results / "scores" / f"{run}.json").read_text())


# masks: video00 writes 6 PNGs (its third expression has no [SEG]: nothing written under the released preset), video01's
# first expression 3, its second fails on its second PNG
@pytest.mark.parametrize("what, prefix, after", [("records", b'{"video"', 4), ("masks", b"\x89PNG", 10)])
def test_a_full_disk_stops_an_rvos_run_at_once_and_resume_completes_it(tmp_path, capsys, monkeypatch, mevis, what,
                                                                        prefix, after):
    assert _rvos("mevis", mevis, tmp_path / "full", SyntheticVideoSegmenter) == 0
    results, counter = tmp_path / "res", Counting()
    with monkeypatch.context() as patch:
        _fail_os_writes(patch, prefix, after)
        assert _rvos("mevis", mevis, results, counter.video) == 2
    line = _error_line(capsys.readouterr().err)
    assert line.startswith(f"error: cannot write {results}") and "No space left on device" in line
    assert "--resume" in line
    assert counter.calls == 2  # the failure came in the second of three videos: the third was never computed
    records = read_jsonl(results / "records" / f"{MEVIS_RUN}.rank0.jsonl")[0]
    assert len(records) == 4 and {r["status"] for r in records} <= {"ok", "no_seg"}  # video00's 3, video01's first
    assert not load_stats(results)
    assert _rvos("mevis", mevis, results, counter.video, "--resume") == 0
    assert counter.calls == 4  # the second video again, then the third
    (entry,), (full,) = load_stats(results), load_stats(tmp_path / "full")
    assert (entry["J"], entry["F"], entry["n_expressions"]) == (full["J"], full["F"], full["n_expressions"])
    assert _scores(results, MEVIS_RUN) == _scores(tmp_path / "full", MEVIS_RUN)


def test_a_full_disk_stops_a_refseg_run_at_once_and_resume_completes_it(tmp_path, capsys, monkeypatch, refer):
    assert _refseg(refer, tmp_path / "full", SyntheticSegmenter) == 0
    results, counter = tmp_path / "res", Counting()
    with monkeypatch.context() as patch:
        _fail_os_writes(patch, b'{"ref_id"', 2)
        assert _refseg(refer, results, counter.image) == 2
    line = _error_line(capsys.readouterr().err)
    assert f"cannot write {results / 'records' / REFSEG_RUN}.rank0.jsonl (No space left on device)" in line
    records = read_jsonl(results / "records" / f"{REFSEG_RUN}.rank0.jsonl")[0]
    assert len(records) == 2 and counter.calls <= 2  # stopped in the image of the third expression
    assert _refseg(refer, results, counter.image, "--resume") == 0
    (entry,), (full,) = load_stats(results), load_stats(tmp_path / "full")
    assert (entry["giou"], entry["ciou"], entry["n_expressions"]) == (full["giou"], full["ciou"],
                                                                     full["n_expressions"])


def test_a_read_only_records_folder_on_resume_is_one_line_before_the_model(tmp_path, capsys, monkeypatch, mevis):
    results = tmp_path / "res"
    assert _rvos("mevis", mevis, results, SyntheticVideoSegmenter, "--limit", "1") == 0
    real = tempfile.TemporaryFile

    def read_only(*args, dir=None, **kwargs):  # what a read-only (e.g. bind-mounted) records folder answers
        if dir is not None and Path(dir).name == "records":
            raise OSError(errno.EROFS, "Read-only file system")
        return real(*args, dir=dir, **kwargs)

    counter = Counting()
    with monkeypatch.context() as patch:
        patch.setattr(tempfile, "TemporaryFile", read_only)
        assert _rvos("mevis", mevis, results, counter.video, "--resume") == 2
    line = _error_line(capsys.readouterr().err)
    assert f"its records folder {results / 'records'} is not writable (Read-only file system)" in line
    assert counter.calls == 0
    assert _rvos("mevis", mevis, results, counter.video, "--resume") == 0 and counter.calls == 2


def test_a_records_file_that_cannot_be_opened_is_one_line(tmp_path, monkeypatch):
    real = os.open

    def refuse(path, flags, *args, **kwargs):
        if str(path).endswith(".jsonl"):
            raise OSError(errno.EROFS, "Read-only file system")
        return real(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", refuse)
    with pytest.raises(ResultsWriteError, match=r"cannot write .*r.jsonl \(Read-only file system\); the run stopped"):
        RecordStore(tmp_path / "records" / "r.jsonl", ("k",), root=tmp_path)


# ---------------------------------------------------------------- item 7: stats once, file modes, odd frame names


class _Killed(BaseException):
    """Stands for a process killed between writing its stats entry and exiting."""


def test_a_finished_run_has_one_stats_entry_whatever_resumes_follow(tmp_path, capsys, monkeypatch, refer, mevis):
    import eval.refseg.runner as refseg_runner

    results = tmp_path / "refseg"
    with monkeypatch.context() as patch:
        patch.setattr(refseg_runner, "print_table", lambda *a, **k: (_ for _ in ()).throw(_Killed()))
        with pytest.raises(_Killed):
            _refseg(refer, results, SyntheticSegmenter)
    assert len(load_stats(results)) == 1  # written, then killed before the lock was released
    assert _refseg(refer, results, SyntheticSegmenter, "--resume") == 0
    assert _refseg(refer, results, SyntheticSegmenter, "--resume") == 0
    assert len(load_stats(results)) == 1
    assert "already holds this finished run's entry" in capsys.readouterr().err
    video = tmp_path / "rvos"
    assert _rvos("mevis", mevis, video, SyntheticVideoSegmenter, "--limit", "1") == 0
    for _ in range(2):
        assert _rvos("mevis", mevis, video, SyntheticVideoSegmenter, "--resume") == 0
    assert [e["n_expressions"] for e in load_stats(video)] == [3, 9]  # the partial run and the finished one


def test_append_stats_same_run_is_idempotent(tmp_path):
    assert append_stats(tmp_path, {"run_id": "a", "records_digest": "x", "n": 1}, same_run=("run_id", "records_digest"))
    assert not append_stats(tmp_path, {"run_id": "a", "records_digest": "x", "n": 2},
                            same_run=("run_id", "records_digest"))
    assert append_stats(tmp_path, {"run_id": "a", "records_digest": "y"}, same_run=("run_id", "records_digest"))
    assert append_stats(tmp_path, {"run_id": "a", "records_digest": "y"})  # without same_run: always appended
    assert [e.get("n") for e in load_stats(tmp_path)] == [1, None, None]


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o007, 0o660)])
def test_results_files_get_the_mode_the_umask_gives(tmp_path, ytvos, umask, mode):
    before = os.umask(umask)
    try:
        assert _rvos("ytvos", ytvos, tmp_path / "res", SyntheticVideoSegmenter) == 0
    finally:
        os.umask(before)
    files = [p for p in (tmp_path / "res").rglob("*") if p.is_file()]
    names = {p.name for p in files}
    assert {"stats.json", f"{YT_RUN}.zip", f"{YT_RUN}.json", f"{YT_RUN}.rank0.jsonl", "00000.png"} <= names
    assert {str(p.relative_to(tmp_path)): stat.S_IMODE(p.stat().st_mode) for p in files} == \
        {str(p.relative_to(tmp_path)): mode for p in files}


def test_a_frame_named_three_dots_is_segmented_and_written(tmp_path, mevis):
    root = tmp_path / "mevis"
    shutil.copytree(mevis, root)
    meta = root / "valid_u" / "meta_expressions.json"
    data = json.loads(meta.read_text())
    frames = data["videos"]["video00"]["frames"]
    (root / "valid_u" / "JPEGImages" / "video00" / f"{frames[1]}.jpg").rename(
        root / "valid_u" / "JPEGImages" / "video00" / "....jpg")
    frames[1] = "..."
    meta.write_text(json.dumps(data))
    assert _rvos("mevis", root, tmp_path / "res", SyntheticVideoSegmenter) == 0
    (entry,) = load_stats(tmp_path / "res")
    assert entry["n_failed"] == 0
    written = tmp_path / "res" / "predictions" / MEVIS_RUN / "video00" / "0" / "....png"
    with Image.open(written) as img:
        assert img.format == "PNG" and img.size == (CFG.width, CFG.height)


def _count_resolutions(monkeypatch):
    calls = []
    real_resolve, real_realpath = Path.resolve, os.path.realpath
    monkeypatch.setattr(Path, "resolve", lambda self, *a, **k: calls.append(self) or real_resolve(self, *a, **k))
    monkeypatch.setattr(os.path, "realpath", lambda p, *a, **k: calls.append(p) or real_realpath(p, *a, **k))
    return calls


@pytest.mark.parametrize("n_expressions", [3, 600])
def test_expression_checks_resolve_no_path_per_expression(tmp_path, monkeypatch, n_expressions):
    """The checks before the model resolve no path per expression or frame (they used to resolve each one, ~1 ms
    apiece): the number of resolutions is the same for 3 and 600 expressions, and none at all."""
    from eval.rvos.datasets import MevisDataset, check_inputs

    root = write_synthetic_mevis(tmp_path / "mevis", SyntheticRVOSConfig(num_videos=1, num_frames=3, height=8,
                                                                           width=10)).root
    meta = root / "valid_u" / "meta_expressions.json"
    data = json.loads(meta.read_text())
    video = data["videos"]["video00"]
    first = next(iter(video["expressions"].values()))
    video["expressions"] = {str(i): dict(first) for i in range(n_expressions)}
    meta.write_text(json.dumps(data))
    calls = _count_resolutions(monkeypatch)
    dataset = MevisDataset(root)
    check_inputs(dataset, dataset.video_ids(), frames=True)
    samples = list(dataset.samples())
    assert len(samples) == n_expressions and all(len(s.frame_paths()) == 3 for s in samples)
    assert calls == []


def test_refseg_checks_resolve_no_path_per_image(monkeypatch, refer):
    from eval.refseg.dataset import check_images, load_refer_split

    calls = _count_resolutions(monkeypatch)
    split = load_refer_split(refer, "refcoco", "val")
    check_images(split, split.images)
    assert calls == [] and split.n_expressions > 0


# ---------------------------------------------------------------- item 8: datasets laid out with symbolic links


def _move_out(path, elsewhere):
    """Move ``path`` to ``elsewhere`` (outside the dataset) and leave a symbolic link to it in its place."""
    elsewhere.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(path, elsewhere)
    path.symlink_to(elsewhere)


def test_symlinked_video_folder_and_frame_are_read_through(tmp_path, mevis):
    assert _rvos("mevis", mevis, tmp_path / "plain", SyntheticVideoSegmenter) == 0
    root = tmp_path / "mevis"
    shutil.copytree(mevis, root)
    frames = root / "valid_u" / "JPEGImages"
    _move_out(frames / "video00", tmp_path / "disk2" / "video00")
    _move_out(frames / "video01" / "00005.jpg", tmp_path / "disk3" / "00005.jpg")
    assert _rvos("mevis", root, tmp_path / "linked", SyntheticVideoSegmenter) == 0
    (linked,), (plain,) = load_stats(tmp_path / "linked"), load_stats(tmp_path / "plain")
    assert (linked["J"], linked["F"], linked["n_failed"]) == (plain["J"], plain["F"], 0)


def test_symlinked_davis_annotation_folder_is_read_through(tmp_path):
    synth = write_synthetic_ref_davis17(tmp_path / "davis", CFG)
    write_synthetic_predictions(synth, tmp_path / "pred")
    annotations = tmp_path / "davis" / "valid" / "Annotations"
    _move_out(annotations / "video01", tmp_path / "disk2" / "video01")
    argv = ["--benchmark", "davis", "--dataset_dir", str(tmp_path / "davis"), "--results_path", str(tmp_path / "res"),
            "--predictions", str(tmp_path / "pred")]
    assert rvos_main(argv) == 0
    (entry,) = load_stats(tmp_path / "res")
    assert entry["J"] == entry["F"] == 1.0  # oracle predictions against the annotations read through the link


def test_symlinked_coco_image_is_read_through(tmp_path, refer):
    assert _refseg(refer, tmp_path / "plain", SyntheticSegmenter) == 0
    root = tmp_path / "refer"
    shutil.copytree(refer, root)
    images = root / "Refer_Segm" / "coco_2014" / "train2014"
    for image in sorted(images.iterdir()):  # every image, the val ones included
        _move_out(image, tmp_path / "coco" / image.name)
    assert _refseg(root, tmp_path / "linked", SyntheticSegmenter) == 0
    (linked,), (plain,) = load_stats(tmp_path / "linked"), load_stats(tmp_path / "plain")
    assert (linked["giou"], linked["ciou"]) == (plain["giou"], plain["ciou"])


def test_symlink_loops_and_dangling_links_in_a_dataset_are_one_line(tmp_path, capsys, mevis):
    root = tmp_path / "mevis"
    shutil.copytree(mevis, root)
    frame = root / "valid_u" / "JPEGImages" / "video01" / "00005.jpg"
    frame.unlink()
    frame.symlink_to(frame)  # a loop
    dangling = root / "valid_u" / "JPEGImages" / "video02" / "00000.jpg"
    dangling.unlink()
    dangling.symlink_to(tmp_path / "gone.jpg")
    counter = Counting()
    assert _rvos("mevis", root, tmp_path / "res", counter.video) == 2
    line = _error_line(capsys.readouterr().err)
    assert f"frame image {frame} is a symbolic link loop" in line
    assert f"{dangling} is a symbolic link to {tmp_path / 'gone.jpg'}, which does not exist" in line
    assert counter.calls == 0


def test_only_regular_files_are_read(tmp_path):
    from eval.common.files import DataFileError, require_regular_file

    with pytest.raises(DataFileError, match="is not a file"):
        require_regular_file(tmp_path, "frame image")
    os.mkfifo(tmp_path / "fifo.jpg")  # reading it would block the run
    (tmp_path / "link.jpg").symlink_to(tmp_path / "fifo.jpg")
    with pytest.raises(DataFileError, match="link.jpg is not a file"):
        require_regular_file(tmp_path / "link.jpg", "frame image")
