"""A newcomer's first runs: the README's first-run commands on the embedded ``tiny`` checkpoints (offline, RANDOM
weights said on stdout and in the pictures), ``tiny`` in every CLI and harness, cheap mistakes refused before torch
is imported, method names in the help, and no empty --out folder left behind by a failed run."""

import argparse
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import litelvlm
from litelvlm.cli import build_parser, main
from litelvlm.outputs import output_dir
from litelvlm.pipeline import TINY_WEIGHTS
from litelvlm.run_options import BUILTIN_METHODS, method_names, method_stages

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools under numpy 2


def readme_first_run_commands() -> list[str]:
    """The commands of the README's first-run block."""
    text = (ROOT / "README.md").read_text()
    section = text.split("### First run", 1)[1]
    block = section.split("```bash", 1)[1].split("```", 1)[0]
    return [line.strip() for line in block.strip().splitlines() if line.strip()]


def _out_of(argv: list[str]) -> str:
    return argv[argv.index("--out") + 1]


# ------------------------------------------------------------------------------------------- the README
def test_readme_first_run_commands_run_offline_on_random_weights(tiny_cache, tmp_path, monkeypatch, capsys):
    commands = readme_first_run_commands()
    assert [shlex.split(c)[:2] for c in commands] == [[".venv/bin/litelvlm", "segment"], [".venv/bin/litelvlm", "segment-video"]]
    monkeypatch.chdir(ROOT)  # the commands name the bundled assets relative to the clone
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for command in commands:
        argv = shlex.split(command)[1:]
        assert "tiny" == argv[argv.index("--checkpoint") + 1]
        out = tmp_path / _out_of(argv)
        argv[argv.index("--out") + 1] = str(out)
        assert main(argv) == 0, command
        stdout = capsys.readouterr().out
        assert f"weights: {TINY_WEIGHTS}" in stdout
        report = json.loads((out / "result.json").read_text())
        assert report["weights"] == TINY_WEIGHTS and report["budget"] in (64, 81)
        if argv[0] == "segment":
            for picture in [report["overlay"], *(row["kept_map"] for row in report["expressions"])]:
                assert "RANDOM weights" in Image.open(picture).text["Title"], picture
        else:
            assert (out / "overlay.mp4").exists() and len(list((out / "00_the_red_car").glob("*.png"))) == 16


# ----------------------------------------------------------------------------------- tiny everywhere
def test_tiny_runs_the_refseg_and_rvos_harnesses(tiny_cache, tmp_path, capsys):
    from eval.common import load_stats
    from eval.refseg.cli import main as refseg_main
    from eval.refseg.synthetic import write_synthetic_refer
    from eval.rvos.cli import main as rvos_main
    from eval.rvos.synthetic import SyntheticRVOSConfig, write_synthetic_ref_davis17

    refer = write_synthetic_refer(tmp_path / "refer", datasets=("refcoco",), seed=1)
    assert refseg_main(["--version", "tiny", "--dataset_dir", str(refer.dataset_dir), "--refer_seg_data", "refcoco|val",
                        "--results_path", str(tmp_path / "refseg"), "--num_retain_tokens", "64", "--limit", "1"]) == 0
    assert f"--version tiny: {TINY_WEIGHTS}" in capsys.readouterr().out
    write_synthetic_ref_davis17(tmp_path / "davis", SyntheticRVOSConfig(num_videos=1, num_frames=4, num_objects=1))
    assert rvos_main(["--benchmark", "davis", "--dataset_dir", str(tmp_path / "davis"), "--split", "valid", "--version", "tiny",
                      "--results_path", str(tmp_path / "rvos"), "--num_retain_tokens", "81", "--preset", "default"]) == 0
    assert f"--version tiny: {TINY_WEIGHTS}" in capsys.readouterr().out
    assert load_stats(tmp_path / "refseg")[-1]["n_images"] == 1 and load_stats(tmp_path / "rvos")[-1]["n_expressions"] >= 1


def test_tiny_towers_come_with_tiny_unless_named(tiny_cache, tiny_glamm_dirs):
    from litelvlm.pipeline import checkpoint_paths

    tiny = json.loads(json.dumps({k: str(v) for k, v in checkpoint_paths("glamm", "tiny").items()}))
    assert tiny["checkpoint"].startswith(str(tiny_cache)) and tiny["vision_tower"].startswith(str(tiny_cache))
    named = checkpoint_paths("glamm", "tiny", tiny_glamm_dirs["clip"])
    assert named["vision_tower"] == tiny_glamm_dirs["clip"]
    video = checkpoint_paths("videoglamm", "tiny")
    assert all(str(video[k]).startswith(str(tiny_cache)) for k in ("checkpoint", "vision_tower", "video_tower"))


# ------------------------------------------------------------------------- cheap mistakes before torch
_PROBE = """
import contextlib, io, json, sys
results = []
for module, argv in json.loads(sys.argv[1]):
    main = __import__(module, fromlist=["main"]).main
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except SystemExit as exit:
            code = exit.code
    results.append({"argv": argv, "code": code, "err": err.getvalue(),
                    "torch": "torch" in sys.modules, "transformers": "transformers" in sys.modules})
print(json.dumps(results))
"""


def _cheap_cases(tmp: Path) -> list[tuple[str, list[str], str]]:
    image, clip = str(ROOT / "litelvlm/assets/sample_scene.jpg"), str(ROOT / "litelvlm/assets/sample_clip.mp4")
    a_file = tmp / "a_file"
    a_file.write_text("x")
    bad_list = tmp / "list.json"
    bad_list.write_text(json.dumps([{"image": image, "expressions": ["a"]}, {"image": "missing.jpg", "expressions": ["b"]}]))
    seg = ["segment", "--text", "the car", "--out", str(tmp / "o")]
    vid = ["segment-video", "--text", "the dog", "--out", str(tmp / "o")]
    refer = ["--dataset_dir", str(tmp), "--results_path", str(tmp / "r"), "--version", "tiny"]
    rvos = ["--benchmark", "mevis", *refer]
    cli = "litelvlm.cli"
    return [
        (cli, [*seg, "--image", str(tmp / "none.jpg"), "--checkpoint", "tiny"], "image not found"),
        (cli, ["segment", "--image", image, "--text", "x", "--checkpoint", "tiny", "--out", str(a_file)], "existing file"),
        (cli, [*seg, "--image", image, "--checkpoint", "tiny", "--method", "nosuch", "--budget", "64"], "unknown pruning method"),
        (cli, [*seg, "--image", image, "--checkpoint", "tiny", "--budget", "577"], "1 to 576"),
        (cli, [*seg, "--image", image, "--checkpoint", "tiny", "--budget", "0"], "positive number"),
        (cli, [*seg, "--image", image], "not in the Hugging Face cache"),  # the default MBZUAI/GLaMM-RefSeg
        (cli, [*seg, "--image", image, "--checkpoint", "tiny", "--vision-tower", "someone/uncached-clip"],
         "not in the Hugging Face cache"),
        (cli, ["segment", "--images", str(bad_list), "--checkpoint", "tiny", "--out", str(tmp / "o")], "entry 2 of 2"),
        (cli, [*vid, "--video", str(tmp / "none.mp4"), "--checkpoint", "tiny"], "video not found"),
        (cli, ["segment-video", "--video", clip, "--text", "x", "--checkpoint", "tiny", "--out", str(a_file)], "existing file"),
        (cli, [*vid, "--video", clip, "--checkpoint", "tiny", "--method", "nosuch", "--budget", "81"], "unknown pruning method"),
        (cli, [*vid, "--video", clip, "--checkpoint", "tiny", "--budget", "1000"], "1 to 576"),
        (cli, [*vid, "--video", clip, "--checkpoint", "someone/uncached-videoglamm"], "not in the Hugging Face cache"),
        ("eval.refseg.cli", [*refer, "--method", "nosuch"], "unknown pruning method"),
        ("eval.refseg.cli", [*refer, "--num_retain_tokens", "1000"], "1 to 576"),
        ("eval.rvos.cli", [*rvos, "--method", "nosuch"], "unknown pruning method"),
        ("eval.rvos.cli", [*rvos, "--num_retain_tokens", "0"], "1..576"),
    ]


def test_cheap_mistakes_are_refused_before_torch_is_imported(tmp_path):
    """All cases run in one fresh interpreter, in order: the first case that imports torch is the one named."""
    hf_home = tmp_path / "hf_home"
    hf_home.mkdir()
    cases = _cheap_cases(tmp_path)
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1",
           "LITELVLM_CACHE": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, "-c", _PROBE, json.dumps([c[:2] for c in cases])], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    for (module, argv, words), result in zip(cases, json.loads(done.stdout)):
        lines = result["err"].strip().splitlines()
        assert result["code"] == 2 and len(lines) == 1 and words in lines[0], (module, argv, result["err"])
        assert not result["torch"] and not result["transformers"], ("imported torch before refusing", module, argv, lines)
    assert not (tmp_path / "o").exists() and not (tmp_path / "cache").exists()


def test_importing_the_command_lines_imports_no_torch():
    code = ("import sys, litelvlm, litelvlm.cli, litelvlm.segment_cli, video.cli, eval.refseg.cli, eval.rvos.cli; "
            "print('torch' in sys.modules, 'transformers' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["False", "False"], done.stderr


# -------------------------------------------------------------------------------- methods and budgets
def test_the_method_list_known_without_torch_is_the_registry():
    import litelvlm.pruning  # noqa: F401  the live registry

    assert method_stages() == BUILTIN_METHODS


@pytest.mark.parametrize("budget", [-1, 0, 577, "abc", 1.5, True])
def test_load_refuses_a_bad_budget_before_anything_loads(budget, no_model_builds):
    with pytest.raises(ValueError) as err:
        litelvlm.load("glamm", "tiny", budget=budget)
    assert str(err.value).startswith(f"budget {budget}: ") and "\n" not in str(err.value)


@pytest.mark.parametrize("method, words", [("nosuch", "unknown pruning method 'nosuch'"), ("dycoke", "does not run on images"),
                                           (None, "unknown pruning method None"), (["litelvlm"], "unknown pruning method")])
def test_load_refuses_a_bad_method_before_anything_loads(method, words, no_model_builds):
    with pytest.raises(ValueError, match=re.escape(words)):
        litelvlm.load("glamm", "tiny", method=method)


def test_a_call_checks_its_budget_and_method_overrides(tiny_cache):
    seg = litelvlm.load("glamm", "tiny", budget=64)
    image = np.zeros((24, 32, 3), np.uint8)
    for budget, words in [(-1, "budget -1: give a positive"), (0, "budget 0"), ("abc", "budget abc"), (600, "1 to 576")]:
        with pytest.raises(ValueError, match=re.escape(words)):
            seg(image, "x", budget=budget)
    with pytest.raises(ValueError, match="does not run on images"):
        seg(image, "x", method="litelvlm-time")
    assert seg(image, "x").num_visual_tokens == 64 and seg(image, "x", budget=None).num_visual_tokens == 576


def _parsers():
    from eval.refseg.cli import build_parser as refseg_parser
    from eval.rvos.cli import build_parser as rvos_parser

    subs = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    return {"segment": (subs["segment"], "image"), "segment-video": (subs["segment-video"], "video"),
            "eval.refseg": (refseg_parser(), "image"), "eval.rvos": (rvos_parser(), "video")}


@pytest.mark.parametrize("name", ["segment", "segment-video", "eval.refseg", "eval.rvos"])
def test_help_lists_the_method_names_and_says_hub_ids_work(name):
    parser, media = _parsers()[name]
    actions = {a.dest: a for a in parser._actions}
    method_help = actions["method"].help
    assert all(m in method_help for m in method_names(media)) and "available_methods" not in method_help
    assert ("litelvlm-time" in method_help) == (media == "video")
    tower = actions["vision_tower"].help
    assert "Hub id" in tower and "local path" not in tower and "tiny" in tower
    checkpoint = actions["checkpoint" if "checkpoint" in actions else "version"].help
    assert "'tiny'" in checkpoint and "RANDOM weights" in checkpoint


# ------------------------------------------------------------------------------------- output folders
def test_a_failed_run_removes_the_out_folders_it_created_and_only_those(tmp_path):
    created = tmp_path / "new" / "deeper" / "out"
    with pytest.raises(RuntimeError):
        with output_dir(created):
            assert created.is_dir()
            raise RuntimeError("the model failed to load")
    assert not (tmp_path / "new").exists()
    existing = tmp_path / "existing"
    existing.mkdir()
    with pytest.raises(RuntimeError):
        with output_dir(existing / "out"):
            raise RuntimeError("failed")
    assert existing.is_dir() and not (existing / "out").exists()
    with pytest.raises(RuntimeError):
        with output_dir(existing):
            raise RuntimeError("failed")
    assert existing.is_dir()  # it existed before: kept, even empty
    with pytest.raises(RuntimeError):
        with output_dir(tmp_path / "wrote"):
            (tmp_path / "wrote" / "mask.png").write_bytes(b"")
            raise RuntimeError("failed after writing")
    assert (tmp_path / "wrote" / "mask.png").exists()


def test_segment_failing_at_model_load_leaves_no_out_folder(tmp_path, tiny_glamm_dirs, capsys):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_glamm_dirs["glamm"], broken)
    (broken / "pytorch_model-00002-of-00002.bin").write_text("404: Not Found\n")
    out = tmp_path / "runs" / "first"
    argv = ["segment", "--image", str(ROOT / "litelvlm/assets/sample_scene.jpg"), "--text", "x", "--checkpoint", str(broken),
            "--vision-tower", str(tiny_glamm_dirs["clip"]), "--out", str(out)]
    assert main(argv) == 2
    assert "pytorch_model-00002-of-00002.bin" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
