"""The shared checks behind the hardened harnesses (eval.common.names / files / images / lock) and the defences that
stay in place even when a dataset object bypasses the checks made when it is opened."""

import argparse
import dataclasses
import json
import os
import pickle
import socket
import subprocess
import zipfile

import numpy as np
import pytest
from PIL import Image

from eval.common.distributed import DistInfo
from eval.common.files import DataFileError, as_int, prepare_results_dir, read_json, read_plain_pickle
from eval.common.images import check_image_file, check_label_image, read_label_image, read_rgb_image
from eval.common.lock import ResultsInUseError, acquire_run_lock, lock_path, results_session, run_lock
from eval.common.names import UnsafeNameError, safe_name, safe_path, zip_entry
from eval.common.writer import ResultsLinkError
from eval.common.stats import load_stats
from eval.refseg.cli import build_parser as refseg_parser
from eval.refseg.cli import main as refseg_main
from eval.refseg.synthetic import SyntheticSegmenter, write_synthetic_refer
from eval.rvos import RefYtvosDataset, write_submission_zip
from eval.rvos.cli import build_parser as rvos_parser
from eval.rvos.cli import main as rvos_main
from eval.rvos.datasets import mevis_rle
from eval.rvos.predictions import write_prediction_masks
from eval.rvos.runner import _remove_masks
from eval.rvos.synthetic import (SyntheticRVOSConfig, write_synthetic_mevis, write_synthetic_predictions,
                                 write_synthetic_ref_ytvos)
from eval.rvos.synthetic_segmenter import SyntheticVideoSegmenter

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools under numpy 2

CFG = SyntheticRVOSConfig(num_videos=2, num_frames=3, height=12, width=16, num_objects=2, frame_step=5, seed=3)


# ---------------------------------------------------------------- names


@pytest.mark.parametrize("name", ["video00", "0a2f9d", "00005", "COCO_train2014_000000000101.jpg", "a b", "x..y",
                                  "...", ".hidden", "é"])
def test_plain_names_are_accepted(name):
    assert safe_name(name, "video id") == name


@pytest.mark.parametrize("name, problem", [
    ("", "is empty"), ("  ", "only whitespace"), ("a/b", "path separator"), ("..", "relative folder"),
    (".", "relative folder"), ("../x", "path separator"), ("/etc", "path separator"), ("a\\b", "path separator"),
    ("C:x", "drive letter"), ("a\x00b", "NUL"), ("a\nb", "control character"), (3, "not a string"),
    (None, "not a string"),
])
def test_unsafe_names_are_refused_naming_what_and_where(name, problem):
    with pytest.raises(UnsafeNameError, match="frame name .* in meta.json") as err:
        safe_name(name, "frame name", "meta.json")
    assert problem in str(err.value) and "fix the dataset file" in str(err.value)


def test_safe_path_joins_checked_names_without_resolving(tmp_path):
    (tmp_path / "root").mkdir()
    (tmp_path / "outside").mkdir()
    (tmp_path / "root" / "link").symlink_to(tmp_path / "outside")
    assert safe_path(tmp_path / "root", "v", "0") == tmp_path / "root" / "v" / "0"
    assert safe_path(tmp_path / "root", "link", "x") == tmp_path / "root" / "link" / "x"  # reads follow links
    with pytest.raises(UnsafeNameError, match="relative folder"):
        safe_path(tmp_path / "root", "..", "outside")


def test_zip_entries_are_plain():
    assert zip_entry("video00", "1", "00005.png", folder="Annotations") == "Annotations/video00/1/00005.png"
    assert zip_entry("video00", "1", "00005.png", folder="") == "video00/1/00005.png"
    assert zip_entry("v", "0", "f.png", folder="/a/b/") == "a/b/v/0/f.png"
    for bad in (("video00", "../../../x", "00000.png"), ("/abs", "0", "f.png"), ("v", "0", "..")):
        with pytest.raises(UnsafeNameError):
            zip_entry(*bad, folder="Annotations")
    with pytest.raises(UnsafeNameError):
        zip_entry("v", "0", "f.png", folder="../up")


# ---------------------------------------------------------------- defences behind the dataset checks


def _tampered_ytvos(tmp_path, video_id=None, exp_id=None):
    """A Ref-YouTube-VOS reader whose names were changed AFTER opening (bypassing the meta checks)."""
    synth = write_synthetic_ref_ytvos(tmp_path / "yt", CFG)
    write_synthetic_predictions(synth, tmp_path / "pred")
    ds = RefYtvosDataset(tmp_path / "yt")
    entry = ds._videos["video00"]
    if exp_id is not None:
        entry["expressions"][exp_id] = entry["expressions"].pop("1")
    if video_id is not None:
        ds._videos[video_id] = ds._videos.pop("video00")
    return ds


def test_mask_writes_and_removals_stay_in_the_predictions_folder(tmp_path):
    victim = tmp_path / "victim"
    (victim / "0").mkdir(parents=True)
    (victim / "0" / "keep.txt").write_text("precious")
    good = next(RefYtvosDataset(write_synthetic_ref_ytvos(tmp_path / "yt", CFG).root).samples())
    sample = dataclasses.replace(good, video_id=str(victim), exp_id="0")  # a sample built past the meta checks
    pred = tmp_path / "res" / "predictions" / "run"
    with pytest.raises(UnsafeNameError, match="video id"):
        write_prediction_masks(pred, sample, np.zeros((CFG.num_frames, CFG.height, CFG.width), bool))
    with pytest.raises(UnsafeNameError, match="video id"):
        _remove_masks(pred, sample)
    assert (victim / "0" / "keep.txt").read_text() == "precious" and sorted(os.listdir(victim)) == ["0"]


def test_a_symlink_inside_the_predictions_folder_is_not_followed(tmp_path):
    synth = write_synthetic_ref_ytvos(tmp_path / "yt", CFG)
    ds = RefYtvosDataset(tmp_path / "yt")
    victim = tmp_path / "victim"
    victim.mkdir()
    pred = tmp_path / "pred"
    pred.mkdir()
    (pred / "video00").symlink_to(victim)
    sample = next(ds.samples())
    with pytest.raises(ResultsLinkError, match=f"{pred / 'video00'} is a symbolic link"):
        write_prediction_masks(pred, sample, synth.oracle_masks("video00", "0"))
    with pytest.raises(ResultsLinkError, match="symbolic link"):
        _remove_masks(pred, sample)
    assert os.listdir(victim) == []
    (victim / "0").mkdir()
    (pred / "video00").unlink()
    (pred / "video00").mkdir()
    (pred / "video00" / "0").symlink_to(victim / "0")
    _remove_masks(pred, sample)  # the link is removed, its target kept
    assert not os.path.lexists(pred / "video00" / "0") and (victim / "0").is_dir()


def test_submission_zip_refuses_slip_names_even_past_the_meta_checks(tmp_path):
    ds = _tampered_ytvos(tmp_path, exp_id="../../../x")
    (tmp_path / "pred" / "video00" / "1").rename(tmp_path / "x")  # where pred/video00/../../../x points
    with pytest.raises(UnsafeNameError, match="expression id '../../../x'"):
        write_submission_zip(ds, tmp_path / "pred", tmp_path / "sub.zip")
    assert not (tmp_path / "sub.zip").exists()
    write_synthetic_predictions(write_synthetic_ref_ytvos(tmp_path / "yt2", CFG), tmp_path / "pred2")
    write_submission_zip(RefYtvosDataset(tmp_path / "yt2"), tmp_path / "pred2", tmp_path / "ok.zip")
    with zipfile.ZipFile(tmp_path / "ok.zip") as zf:
        assert all(".." not in n.split("/") and not n.startswith("/") for n in zf.namelist())


# ---------------------------------------------------------------- files


def test_plain_pickles_load_and_globals_are_refused(tmp_path):
    data = [{"ref_id": 1, "sentences": [{"sent": "a man", "sent_id": 7, "tokens": ["a", "man"]}],
             "bbox": (1.0, 2.5), "ok": True, "none": None, "big": 2 ** 70, "text": "café"}]
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        (tmp_path / "refs.p").write_bytes(pickle.dumps(data, protocol=protocol))
        assert read_plain_pickle(tmp_path / "refs.p", "refs file") == data
    # REFER's files were written by Python 2: byte strings (SHORT_BINSTRING) and ints, no globals
    (tmp_path / "py2.p").write_bytes(b"\x80\x02]q\x00(}q\x01U\x06ref_idq\x02K\x05sU\x03valq\x03e.")
    assert read_plain_pickle(tmp_path / "py2.p", "refs file") == [{"ref_id": 5}, "val"]
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    (tmp_path / "evil.p").write_bytes(pickle.dumps([Payload()]))
    with pytest.raises(DataFileError, match=r"refs file .*evil.p was refused: it names the Python global posix.system"):
        read_plain_pickle(tmp_path / "evil.p", "refs file")
    assert not marker.exists()
    (tmp_path / "obj.p").write_bytes(pickle.dumps([np.int64(3)]))
    with pytest.raises(DataFileError, match="global numpy"):
        read_plain_pickle(tmp_path / "obj.p", "refs file")
    with pytest.raises(FileNotFoundError, match="refs file not found"):
        read_plain_pickle(tmp_path / "none.p", "refs file")


def test_shared_references_that_expand_a_pickle_are_refused(tmp_path):
    level = ["x"] * 100
    for _ in range(3):
        level = [level] * 100  # 1e8 strings once expanded, a few KB on disk
    (tmp_path / "bomb.p").write_bytes(pickle.dumps(level, protocol=2))
    assert (tmp_path / "bomb.p").stat().st_size < 5000
    with pytest.raises(DataFileError, match=r"refs file .*bomb.p was refused: its shared references expand to more "
                                            r"than 1,000,000 objects"):
        read_plain_pickle(tmp_path / "bomb.p", "refs file")
    cycle = [1]
    cycle.append(cycle)
    (tmp_path / "cycle.p").write_bytes(pickle.dumps(cycle))
    with pytest.raises(DataFileError, match="cycle.p was refused: it holds a reference cycle"):
        read_plain_pickle(tmp_path / "cycle.p", "refs file")
    deep = []
    for _ in range(150):
        deep = [deep]
    (tmp_path / "deep.p").write_bytes(pickle.dumps(deep))
    with pytest.raises(DataFileError, match="deep.p was refused: it nests lists / dicts more than 100 levels deep"):
        read_plain_pickle(tmp_path / "deep.p", "refs file")
    # sharing that does not amplify is fine: the same key strings and a shared small list in every ref
    split, tokens = "val", ["a", "man"]
    refs = [{"split": split, "ref_id": i, "sentences": [{"sent": "a man", "tokens": tokens}]} for i in range(20000)]
    (tmp_path / "refs.p").write_bytes(pickle.dumps(refs, protocol=2))
    assert read_plain_pickle(tmp_path / "refs.p", "refs file") == refs


@pytest.mark.parametrize("value, expected", [(3, 3), (3.0, 3), ("12", 12), (" -4 ", -4), (2 ** 70, 2 ** 70),
                                             (float("nan"), None), (float("inf"), None), (1.5, None), (True, None),
                                             ("1e3", None), ("²", None), (None, None), ([1], None)])
def test_as_int_takes_only_integers(value, expected):
    assert as_int(value) == expected


def test_names_that_no_file_system_holds_are_refused():
    assert safe_name("é" * 125, "expression id") == "é" * 125  # 250 bytes
    with pytest.raises(UnsafeNameError, match="expression id 'ééé.* is 252 bytes long; file names hold at most 251"):
        safe_name("é" * 126, "expression id")
    with pytest.raises(UnsafeNameError, match="no file name can store"):
        safe_name("a\ud800b", "frame name")


def test_deeply_nested_json_anywhere_is_one_error_naming_the_file(tmp_path):
    from eval.common.records import read_jsonl
    from eval.refseg.sources import load_predictions

    deep = "[" * 100000 + "]" * 100000
    (tmp_path / "a.json").write_text(deep)
    with pytest.raises(DataFileError, match="a.json nests its JSON lists / objects too deeply"):
        read_json(tmp_path / "a.json", "meta")
    (tmp_path / "stats.json").write_text(deep)
    with pytest.raises(ValueError, match="stats.json nests too deeply; move it away"):
        load_stats(tmp_path)
    (tmp_path / "r.jsonl").write_text(deep + "\n" + '{"a": 1}\n')
    with pytest.raises(ValueError, match="r.jsonl: line 1 is not a JSON object; the records file is corrupt"):
        read_jsonl(tmp_path / "r.jsonl")
    for line, words in [(deep, "nested too deeply"), ('{"ref_id": 1e999, "sent_id": 1, "rle": {}}', "inf is not an "
                        "integer"), ('{"ref_id": 1, "sent_id": 2, "rle": {"size": [NaN, 3], "counts": ""}}',
                                     "rle size .* is not")]:
        (tmp_path / "p.jsonl").write_text(line + "\n")
        with pytest.raises(ValueError, match=rf"p.jsonl: line 1 must be a JSON object .*{words}"):
            load_predictions(tmp_path / "p.jsonl")


def test_a_decompression_bomb_prediction_mask_is_one_line(tmp_path, capsys):
    from test_eval_hardening import bomb_png

    synth = write_synthetic_ref_ytvos(tmp_path / "yt", CFG)
    write_synthetic_predictions(synth, tmp_path / "pred")
    mask = tmp_path / "pred" / "video01" / "0" / "00005.png"
    bomb_png(mask)
    argv = ["--benchmark", "ytvos", "--dataset_dir", str(tmp_path / "yt"), "--results_path", str(tmp_path / "res"),
            "--predictions", str(tmp_path / "pred")]
    assert rvos_main(argv) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"error: prediction mask {mask} is refused: Image size (900000000 pixels) exceeds limit")
    assert "decompression bomb" in line and not load_stats(tmp_path / "res")


def test_eval_and_checkpoint_json_readers_are_one_reader_with_its_own_fix(tmp_path):
    from litelvlm.jsonfile import read_json as read_checkpoint_json

    for name, data in {"bad": b'{"a": }', "latin": b'{"a": "\xff"}', "deep": b"[" * 100000 + b"]" * 100000}.items():
        path = tmp_path / f"{name}.json"
        path.write_bytes(data)
        with pytest.raises(DataFileError) as harness:
            read_json(path, "meta")
        with pytest.raises(ValueError) as checkpoint:
            read_checkpoint_json(path, "meta")
        problem = str(harness.value).removesuffix(": fix or re-download the file")
        assert problem.startswith(f"meta {path} ") and problem != str(harness.value)
        assert str(checkpoint.value) == f"{problem}: the file is corrupt or incomplete; re-download it"


def test_read_json_names_the_file_and_position(tmp_path):
    (tmp_path / "a.json").write_text('{"a": 1,\n "b": }')
    with pytest.raises(DataFileError, match=r"meta .*a.json is not valid JSON \(Expecting value at line 2 column 7, char 15\): fix or re-download"):
        read_json(tmp_path / "a.json", "meta")
    (tmp_path / "b.json").write_bytes(b'{"a": "\xff"}')
    with pytest.raises(DataFileError, match="not UTF-8"):
        read_json(tmp_path / "b.json", "meta")
    (tmp_path / "dir.json").mkdir()
    with pytest.raises(DataFileError, match="is not a file"):
        read_json(tmp_path / "dir.json", "meta")
    (tmp_path / "ok.json").write_text('{"videos": {"v": [1, 2.5, null]}}')
    assert read_json(tmp_path / "ok.json", "meta") == {"videos": {"v": [1, 2.5, None]}}


def test_prepare_results_dir(tmp_path):
    assert prepare_results_dir(tmp_path / "new" / "deep") == tmp_path / "new" / "deep"
    assert (tmp_path / "new" / "deep").is_dir() and os.listdir(tmp_path / "new" / "deep") == []
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataFileError, match="--results_path .*file is an existing file, not a folder"):
        prepare_results_dir(tmp_path / "file")
    with pytest.raises(DataFileError, match="cannot be created"):
        prepare_results_dir(tmp_path / "file" / "sub")
    (tmp_path / "res").mkdir()
    (tmp_path / "res" / "records").write_text("x")
    with pytest.raises(DataFileError, match="holds a file .*records where the run keeps its records folder"):
        prepare_results_dir(tmp_path / "res", subdirs=("records",))


def test_prepare_results_dir_refuses_a_read_only_folder(tmp_path, monkeypatch):
    """The write probe failing as it does in a read-only folder (tests may run as root, who can write anyway)."""
    import tempfile

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    folder = tmp_path / "ro"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "TemporaryFile", refuse)
    with pytest.raises(DataFileError, match="is not writable"):
        prepare_results_dir(folder)


# ---------------------------------------------------------------- images


def _jpeg(path, shape=(12, 16)):
    pixels = np.random.default_rng(0).integers(0, 256, size=(*shape, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, quality=90)
    return path


def test_image_checks(tmp_path):
    path = _jpeg(tmp_path / "a.jpg")
    info = check_image_file(path, "frame image")
    assert (info.format, info.mode, info.shape) == ("JPEG", "RGB", (12, 16))
    (tmp_path / "tail.jpg").write_bytes(path.read_bytes() + b"\x00" * 16)  # bytes after EOI: complete, accepted
    assert check_image_file(tmp_path / "tail.jpg").shape == (12, 16)
    (tmp_path / "cut.jpg").write_bytes(path.read_bytes()[:-40])
    with pytest.raises(DataFileError, match=r"frame image .*cut.jpg is truncated or corrupt"):
        check_image_file(tmp_path / "cut.jpg", "frame image")
    with pytest.raises(DataFileError, match=r"cut.jpg is truncated or corrupt"):
        read_rgb_image(tmp_path / "cut.jpg", "frame image")
    (tmp_path / "text.jpg").write_text("hello")
    with pytest.raises(DataFileError, match="truncated, corrupt or not an image"):
        check_image_file(tmp_path / "text.jpg")
    with pytest.raises(FileNotFoundError, match="frame image not found"):
        check_image_file(tmp_path / "none.jpg", "frame image")


def test_label_images(tmp_path):
    labels = np.array([[0, 1, 2], [255, 3, 0]], dtype=np.uint16)
    Image.fromarray(labels).save(tmp_path / "l16.png")
    assert check_label_image(tmp_path / "l16.png").mode == "I;16"
    got = read_label_image(tmp_path / "l16.png")
    assert got.dtype == np.uint8 and np.array_equal(got, labels)
    Image.fromarray(np.array([[0, 300]], dtype=np.uint16)).save(tmp_path / "big.png")
    with pytest.raises(DataFileError, match="label value 300"):
        read_label_image(tmp_path / "big.png", "DAVIS annotation PNG")
    Image.fromarray(np.zeros((2, 2, 3), np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(DataFileError, match="expected a palette or greyscale PNG .* got mode RGB"):
        check_label_image(tmp_path / "rgb.png")
    noise = np.random.default_rng(0).integers(0, 255, size=(64, 64), dtype=np.uint8)
    Image.fromarray(noise, mode="L").save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "no_end.png").write_bytes(data[:-12])  # IEND gone, pixel data whole: decodes, accepted
    assert np.array_equal(read_label_image(tmp_path / "no_end.png"), noise)
    assert check_label_image(tmp_path / "no_end.png").shape == (64, 64)
    (tmp_path / "cut.png").write_bytes(data[: len(data) * 2 // 3])  # pixel data cut
    with pytest.raises(DataFileError, match=r"annotation .*cut.png is truncated or corrupt"):
        check_label_image(tmp_path / "cut.png", "annotation")
    with pytest.raises(DataFileError, match=r"cut.png is truncated or corrupt"):
        read_label_image(tmp_path / "cut.png")


# ---------------------------------------------------------------- MeViS mask_dict entries


def test_mevis_rle_entries():
    from pycocotools import mask as mask_utils

    mask = np.zeros((4, 5), np.uint8)
    mask[1:3, 2:4] = 1
    rle = mask_utils.encode(np.asfortranarray(mask))
    compressed = {"size": [4, 5], "counts": rle["counts"].decode()}
    assert np.array_equal(mask_utils.decode(mevis_rle(compressed)), mask)
    flat = mask.flatten(order="F")
    edges = np.flatnonzero(np.diff(flat)) + 1
    counts = np.diff(np.concatenate([[0], edges, [flat.size]])).tolist()
    assert np.array_equal(mask_utils.decode(mevis_rle({"size": [4, 5], "counts": counts})), mask)
    assert mevis_rle(None) is None
    for bad, words in [([[1, 1, 3, 1, 3, 3]], "polygon"), (7, "the int 7"), ({"counts": "x"}, "size None"),
                       ({"size": [4, 5]}, "counts are missing"), ({"size": [4, 5], "counts": [3, 4]}, "sum to 7"),
                       ({"size": [4, 5], "counts": [20.0]}, "not non-negative integers"), ({}, "size")]:
        with pytest.raises(ValueError, match=words):
            mevis_rle(bad)


# ---------------------------------------------------------------- the results folder lock


def _dead_pid():
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_lock_refuses_a_second_holder_and_is_released(tmp_path):
    with run_lock(tmp_path, "run_a") as lock:
        assert lock.path == lock_path(tmp_path, "run_a") == tmp_path / ".run_a.lock"
        owner = json.loads(lock.path.read_text())
        assert owner["pid"] == os.getpid() and owner["host"] == socket.gethostname() and owner["run_id"] == "run_a"
        with pytest.raises(ResultsInUseError, match=rf"results folder {tmp_path} is in use by another run of run_a: "
                                                    rf"pid {os.getpid()} on {socket.gethostname()}, started"):
            acquire_run_lock(tmp_path, "run_a")
        acquire_run_lock(tmp_path, "run_b").release()  # another run may share the folder
    assert not lock.path.exists()
    acquire_run_lock(tmp_path, "run_a").release()
    lock.release()  # idempotent


def test_a_stale_lock_of_a_dead_run_is_taken_over_with_a_note(tmp_path, capsys):
    data = write_synthetic_refer(tmp_path / "refer", datasets=("refcoco",), images_per_split=1, seed=1)
    results = tmp_path / "res"
    results.mkdir()
    pid = _dead_pid()
    stale = {"pid": pid, "host": socket.gethostname(), "started": "2020-01-01T00:00:00+00:00", "command": "old run"}
    (results / ".refcoco_val_litelvlm_b576_all.lock").write_text(json.dumps(stale))
    argv = ["--dataset_dir", str(data.dataset_dir), "--refer_seg_data", "refcoco|val", "--results_path", str(results),
            "--version", "ckpt"]
    assert refseg_main(argv, segmenter_factory=SyntheticSegmenter) == 0
    err = capsys.readouterr().err
    assert f"note: results folder {results}: taking over the stale lock of run refcoco_val_litelvlm_b576_all left " \
           f"by pid {pid} on {socket.gethostname()}" in err and "its pid is gone" in err
    assert not (results / ".refcoco_val_litelvlm_b576_all.lock").exists() and load_stats(results)


def test_without_flock_support_only_a_dead_pid_on_this_host_is_stale(tmp_path, monkeypatch, capsys):
    import eval.common.lock as lock_module

    monkeypatch.setattr(lock_module, "_try_flock", lambda fd: None)  # e.g. a filesystem without flock
    path = lock_path(tmp_path, "run")
    here = socket.gethostname()
    path.write_text(json.dumps({"pid": os.getpid(), "host": here, "started": "t"}))  # alive
    with pytest.raises(ResultsInUseError, match=rf"pid {os.getpid()} on {here}, started t; wait for it"):
        acquire_run_lock(tmp_path, "run")
    path.write_text(json.dumps({"pid": 4242, "host": "elsewhere", "started": "t"}))  # cannot be judged from here
    with pytest.raises(ResultsInUseError, match=rf"if that run is no longer running .* delete {path}"):
        acquire_run_lock(tmp_path, "run")
    path.write_text(json.dumps({"pid": _dead_pid(), "host": here, "started": "t"}))
    acquire_run_lock(tmp_path, "run").release()
    assert "taking over the stale lock of run run" in capsys.readouterr().err and not path.exists()


def test_a_held_lock_refuses_the_harness_in_one_line(tmp_path, capsys):
    data = write_synthetic_refer(tmp_path / "refer", datasets=("refcoco",), images_per_split=1, seed=1)
    argv = ["--dataset_dir", str(data.dataset_dir), "--refer_seg_data", "refcoco|val", "--results_path",
            str(tmp_path / "res"), "--version", "ckpt"]
    (tmp_path / "res").mkdir()
    calls = []
    with run_lock(tmp_path / "res", "refcoco_val_litelvlm_b576_all"):
        assert refseg_main(argv, segmenter_factory=lambda c: calls.append(c) or SyntheticSegmenter(c)) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"error: results folder {tmp_path / 'res'} is in use by another run of "
                           f"refcoco_val_litelvlm_b576_all: pid {os.getpid()}") and calls == []
    assert refseg_main(argv, segmenter_factory=SyntheticSegmenter) == 0  # released: runs


class _Killed(BaseException):
    """Stands for an interrupted process (not an Exception)."""


def test_the_lock_is_released_when_a_run_is_interrupted(tmp_path):
    write_synthetic_mevis(tmp_path / "mevis", SyntheticRVOSConfig(num_videos=2, num_frames=2, height=8, width=10))

    class Dies(SyntheticVideoSegmenter):
        def segment(self, *args, **kwargs):
            raise _Killed()

    argv = ["--benchmark", "mevis", "--dataset_dir", str(tmp_path / "mevis"), "--results_path", str(tmp_path / "res"),
            "--version", "c", "--video-tower", "v"]
    with pytest.raises(_Killed):
        rvos_main(argv, segmenter_factory=Dies)
    assert not list((tmp_path / "res").glob(".*.lock"))
    assert rvos_main(argv + ["--resume"], segmenter_factory=SyntheticVideoSegmenter) == 0


def test_only_rank_zero_takes_the_lock_and_every_rank_gets_its_outcome(tmp_path, monkeypatch):
    import eval.common.distributed as distributed

    sent = []
    monkeypatch.setattr(distributed, "gather_objects", lambda obj, info: sent.append(obj) or [rank0_error, obj])
    rank0_error = None
    with results_session(tmp_path / "res", "run", DistInfo(rank=1, world_size=2)) as lock:
        assert lock is None
    assert not (tmp_path / "res").exists() and sent == [None]  # rank 1 touched nothing
    rank0_error = ResultsInUseError("results folder x is in use by another run of run")
    with pytest.raises(ResultsInUseError, match="in use"):
        with results_session(tmp_path / "res", "run", DistInfo(rank=1, world_size=2)):
            pass
    with results_session(tmp_path / "res0", "run", DistInfo(rank=0, world_size=1)) as lock:
        assert lock.path.exists()
    assert not lock.path.exists()


# ---------------------------------------------------------------- command-line options


@pytest.mark.parametrize("parser", [refseg_parser, rvos_parser])
def test_every_option_has_help_with_its_default_and_both_spellings(parser):
    p = parser()
    for action in p._actions:
        if isinstance(action, argparse._HelpAction) or action.help == argparse.SUPPRESS:
            continue
        assert action.help and "default" in action.help, action.option_strings
        if action.default not in (None,):
            assert "%(default)s" in action.help or str(action.default) in action.help, action.option_strings
        names = set(action.option_strings)
        for name in names:
            stem = name[2:]
            if "-" in stem or "_" in stem:
                assert {"--" + stem.replace("_", "-"), "--" + stem.replace("-", "_")} <= names, names
    text = p.format_help()
    assert "%(default)" not in text and "(default:" in text
