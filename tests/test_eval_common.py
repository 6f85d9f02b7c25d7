"""Shared evaluation infrastructure: records store, stats file, sharding, distributed helpers, tables, progress."""

import json
import multiprocessing
import os
import socket

import numpy as np
import pytest

from eval.common import (DistInfo, RecordsExistError, RecordStore, append_stats, check_run_meta, dist_info,
                         distributed_session, format_table, gather_objects, load_stats, progress_bar, read_jsonl,
                         record_path, run_record_paths, shard)

KEYS = ("video", "exp_id")


def _rec(video, exp, value):
    return {"video": video, "exp_id": exp, "value": value}


def test_record_store_appends_and_resumes(tmp_path):
    path = record_path(tmp_path, "run", 0)
    with RecordStore(path, KEYS) as store:
        store.add(_rec("a", 1, 0.5))
        store.add(_rec("a", 2, 0.25))
        with pytest.raises(ValueError, match="already"):
            store.add(_rec("a", 1, 9.0))
        # every line is on disk as soon as it is added
        assert [r["value"] for r in read_jsonl(path)[0]] == [0.5, 0.25]
    with pytest.raises(RecordsExistError, match="--resume"):
        RecordStore(path, KEYS)
    with RecordStore(path, KEYS, resume=True) as store:
        assert store.has(("a", 1)) and store.has(("a", 2)) and not store.has(("b", 1))
        assert store.get(("a", 2))["value"] == 0.25
        store.add(_rec("b", 1, 1.0))
    assert [r["value"] for r in read_jsonl(path)[0]] == [0.5, 0.25, 1.0]
    assert run_record_paths(tmp_path, "run") == [path]


@pytest.mark.parametrize("torn", [b'{"video": "c", "exp_', b'{"video": "c", "exp_id": 3, "value": "\xc3',
                                  b'{"video": "c", garbage}\n', b"[1, 2]\n"])
def test_torn_last_line_is_dropped_and_truncated(tmp_path, torn):
    path = record_path(tmp_path, "run", 0)
    with RecordStore(path, KEYS) as store:
        store.add(_rec("a", 1, 0.5))
        store.add(_rec("a", 2, 0.25))
    good = path.read_bytes()
    path.write_bytes(good + torn)
    records, valid = read_jsonl(path)
    assert len(records) == 2 and valid == len(good)
    with RecordStore(path, KEYS, resume=True) as store:
        assert len(store) == 2
        store.add(_rec("c", 3, 2.0))
    assert path.read_bytes() == good + b'{"video":"c","exp_id":3,"value":2.0}\n'


def test_corrupt_middle_line_and_duplicates_across_files_are_errors(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"video": "a", "exp_id": 1}\nnot json\n{"video": "a", "exp_id": 2}\n')
    with pytest.raises(ValueError, match="line 2"):
        read_jsonl(path)
    mine, other = record_path(tmp_path, "run", 0), record_path(tmp_path, "run", 1)
    other.parent.mkdir(parents=True, exist_ok=True)
    other.write_text(json.dumps(_rec("a", 1, 0.5)) + "\n")
    with RecordStore(mine, KEYS, resume=True, other_paths=[other]) as store:
        assert store.has(("a", 1))  # the other rank's records count as done
        with pytest.raises(ValueError, match="already"):
            store.add(_rec("a", 1, 0.5))
    mine.write_text(json.dumps(_rec("a", 1, 0.5)) + "\n")
    with pytest.raises(ValueError, match="appears twice"):
        RecordStore(mine, KEYS, resume=True, other_paths=[other])
    with pytest.raises(RecordsExistError):
        RecordStore(record_path(tmp_path, "run", 2), KEYS, other_paths=[other])
    assert run_record_paths(tmp_path, "run") == [mine, other]
    with pytest.raises(KeyError, match="exp_id"):
        with RecordStore(tmp_path / "x.jsonl", KEYS) as store:
            store.add({"video": "a"})


def _append_many(args):
    folder, worker = args
    for i in range(5):
        append_stats(folder, {"worker": worker, "i": i, "score": worker + i / 10})


def test_append_stats_is_atomic_under_concurrency(tmp_path):
    with multiprocessing.get_context("fork").Pool(4) as pool:
        pool.map(_append_many, [(str(tmp_path), w) for w in range(8)])
    entries = load_stats(tmp_path)
    assert sorted((e["worker"], e["i"]) for e in entries) == [(w, i) for w in range(8) for i in range(5)]
    for w in range(8):  # each writer's entries stay in its own order
        assert [e["i"] for e in entries if e["worker"] == w] == list(range(5))
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_append_stats_rejects_bad_files_and_values(tmp_path):
    append_stats(tmp_path, {"a": 1})
    with pytest.raises(ValueError, match="non-finite"):
        append_stats(tmp_path, {"a": float("nan")})
    assert load_stats(tmp_path) == [{"a": 1}]
    (tmp_path / "stats.json").write_text('{"a": 1}')
    with pytest.raises(ValueError, match="JSON list"):
        append_stats(tmp_path, {"b": 2})


def test_shard_covers_every_item_once_without_padding():
    rng = np.random.default_rng(0)
    for _ in range(50):
        items = list(rng.permutation(int(rng.integers(0, 30))))
        world = int(rng.integers(1, 9))
        shards = [shard(items, r, world) for r in range(world)]
        assert sorted(x for s in shards for x in s) == sorted(items)
        assert sum(len(s) for s in shards) == len(items)
        assert max(map(len, shards)) - min(map(len, shards)) <= 1
    with pytest.raises(ValueError, match="rank"):
        shard([1, 2], 2, 2)


def test_dist_info_reads_launcher_environment(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert dist_info() == DistInfo(0, 1, 0)
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    info = dist_info()
    assert (info.rank, info.world_size, info.local_rank, info.is_main, info.distributed) == (3, 4, 1, False, True)
    monkeypatch.setenv("RANK", "4")
    with pytest.raises(ValueError, match="RANK=4"):
        dist_info()
    monkeypatch.setenv("RANK", "x")
    with pytest.raises(ValueError, match="RANK"):
        dist_info()


def _gather_worker(rank, port, out_dir):
    os.environ.update(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    with distributed_session("gloo") as info:
        gathered = gather_objects({"rank": info.rank, "items": shard(list(range(7)), info.rank, 2)}, info)
    with open(os.path.join(out_dir, f"{rank}.json"), "w") as handle:
        json.dump(gathered, handle)


def test_gather_objects_on_two_gloo_processes(tmp_path):
    import torch.multiprocessing as mp

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    mp.spawn(_gather_worker, args=(port, str(tmp_path)), nprocs=2, join=True)
    expected = [{"rank": 0, "items": [0, 2, 4, 6]}, {"rank": 1, "items": [1, 3, 5]}]
    for rank in range(2):
        assert json.loads((tmp_path / f"{rank}.json").read_text()) == expected
    assert gather_objects("solo", DistInfo()) == ["solo"]


def test_check_run_meta_pins_inputs(tmp_path):
    check_run_meta(tmp_path, "run", {"ckpt": "a"}, fresh=True)
    check_run_meta(tmp_path, "run", {"ckpt": "a"}, fresh=False)
    with pytest.raises(ValueError, match="ckpt: recorded 'a', now 'b'"):
        check_run_meta(tmp_path, "run", {"ckpt": "b"}, fresh=False)
    check_run_meta(tmp_path, "run", {"ckpt": "b"}, fresh=True)  # a fresh run re-pins
    check_run_meta(tmp_path, "run", {"ckpt": "b"}, fresh=False)


def test_format_table_aligns_columns():
    text = format_table([{"name": "refcoco", "score": 0.123456, "n": 3}, {"name": "g", "score": 1.0, "n": None}],
                        float_digits=3, title="T")
    lines = text.splitlines()
    assert lines[0] == "T"
    assert len({len(line) for line in lines[1:]}) == 1
    assert "0.123" in lines[3] and "1.000" in lines[4] and lines[1].split(" | ")[0].strip() == "name"
    with pytest.raises(ValueError):
        format_table([])
    auto = format_table([{"text": "'a dog'", "pixels": 12}, {"text": "'the red car'", "pixels": 3456}], align="auto").splitlines()
    assert auto == ["text          | pixels", "--------------+-------", "'a dog'       |     12", "'the red car' |   3456"]


def test_progress_bar_only_on_enabled_rank(capsys):
    with progress_bar(total=3, desc="work", initial=1, enabled=True) as bar:
        bar.update(2)
    assert "work" in capsys.readouterr().err
    with progress_bar(total=3, desc="hidden", enabled=False) as bar:
        bar.update(3)
    assert "hidden" not in capsys.readouterr().err
