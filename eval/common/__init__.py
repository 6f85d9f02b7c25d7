"""Evaluation infrastructure shared by the image (RefCOCO) and video (Ref-DAVIS / Ref-YouTube-VOS / MeViS) harnesses.

* ``records``: ``RecordStore``, resumable JSONL per-item records keyed by a tuple of fields; one file per
  rank, ``record_path`` / ``run_record_paths`` name them; a torn last line is tolerated on resume;
  ``check_run_meta`` refuses to resume records made from other inputs; ``open_run_store`` does both for a rank;
  ``supersede_field`` lets a retried item's record replace its earlier one.
* ``stats``: ``append_stats(results_dir, entry)`` appends one run entry to ``stats.json`` atomically.
* ``distributed``: ``dist_info``, ``init_distributed`` / ``distributed_session``, ``shard`` (no padded duplicates),
  ``gather_objects``, ``barrier``, ``shutdown_distributed`` for torchrun / deepspeed launches.
* ``model``: ``import_callable`` (the ``--segmenter-factory`` hook), ``resolve_device``, ``resolve_dtype``,
  ``seed_everything``, ``derive_seed``.
* ``progress``: ``progress_bar``, a tqdm bar with ETA shown on one rank.
* ``table``: ``format_table`` / ``print_table`` for end-of-run summaries.
* ``names``: dataset-controlled names: ``safe_name`` (a plain file / folder name or an error), ``safe_path``
  (checked names joined to a root, nothing resolved), ``zip_entry`` (checked zip names).
* ``writer``: every write of a run: inside the results folder, never through a symbolic link (``check_no_links``,
  ``open_results_fd``, ``write_results_file``, ...); a failed write is one ``ResultsWriteError`` line.
* ``files``: ``read_json`` (errors name the file and position), ``read_plain_pickle`` (no globals: a crafted pickle
  cannot run code), ``prepare_results_dir`` (create / check the results folder is a writable folder up front).
* ``images``: ``check_image_file`` / ``check_rgb_image`` / ``check_label_image`` (cheap pre-run checks: header,
  size, JPEG EOI / PNG IEND end), ``read_rgb_image`` (strict, 16-bit aware), ``read_label_image`` (8/16-bit labels).
* ``lock``: ``results_session`` / ``acquire_run_lock``: one run of a run id per results folder at a time (rank 0
  holds the lock of a multi-process run), stale locks of dead runs taken over with a note.

Typical harness loop: ``with distributed_session() as info:``; order the items deterministically; ``mine = shard(items,
info.rank, info.world_size)``; open ``RecordStore(record_path(dir, run_id, info.rank), key_fields,
resume=..., other_paths=run_record_paths(dir, run_id))``; skip ``store.has(key)``; ``store.add(record)``
per item; ``gather_objects`` the records of ``mine``; rank 0 merges in canonical order, scores, calls
``append_stats`` and prints the table.
"""

from .files import DataFileError, prepare_results_dir, read_json, read_plain_pickle
from .images import check_image_file, check_label_image, check_rgb_image, read_label_image, read_rgb_image
from .lock import ResultsInUseError, acquire_run_lock, results_session, run_lock
from .names import UnsafeNameError, safe_name, safe_path, zip_entry
from .writer import ResultsLinkError, ResultsWriteError, check_no_links, write_results_file
from .distributed import (DistInfo, barrier, dist_info, distributed_session, gather_objects, init_distributed, shard,
                          shutdown_distributed)
from .model import derive_seed, import_callable, resolve_device, resolve_dtype, seed_everything
from .progress import progress_bar
from .records import (RecordsExistError, RecordStore, check_run_meta, open_run_store, read_jsonl, record_key,
                      record_path, run_record_paths)
from .stats import append_stats, load_stats
from .table import format_table, print_table

__all__ = [
    "DistInfo", "barrier", "dist_info", "distributed_session", "gather_objects", "init_distributed", "shard",
    "shutdown_distributed",
    "derive_seed", "import_callable", "resolve_device", "resolve_dtype", "seed_everything",
    "progress_bar",
    "RecordsExistError", "RecordStore", "check_run_meta", "open_run_store", "read_jsonl", "record_key",
    "record_path", "run_record_paths",
    "append_stats", "load_stats",
    "format_table", "print_table",
    "DataFileError", "prepare_results_dir", "read_json", "read_plain_pickle",
    "check_image_file", "check_label_image", "check_rgb_image", "read_label_image", "read_rgb_image",
    "ResultsInUseError", "acquire_run_lock", "results_session", "run_lock",
    "UnsafeNameError", "safe_name", "safe_path", "zip_entry",
    "ResultsLinkError", "ResultsWriteError", "check_no_links", "write_results_file",
]
