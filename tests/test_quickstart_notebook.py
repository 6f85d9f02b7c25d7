"""docs/quickstart.ipynb: committed without outputs, and runs top to bottom on the embedded tiny checkpoints."""

from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "docs" / "quickstart.ipynb"


def _text(cell) -> str:
    return "".join(out.get("text", "") for out in cell.outputs if out.output_type == "stream")


def test_quickstart_is_committed_without_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(cell.outputs == [] and cell.execution_count is None for cell in code)


def test_quickstart_runs_on_the_tiny_checkpoints(tmp_path, monkeypatch):
    """Every cell runs (an error fails here); it shows pictures, the budgets and a video answered with [SEG]."""
    from nbclient import NotebookClient

    monkeypatch.setenv("LITELVLM_CACHE", str(tmp_path / "cache"))  # the kernel inherits the environment
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(REPO)}}).execute()
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    pictures = [cell for cell in code if any("image/png" in out.get("data", {}) for out in cell.outputs)]
    assert len(pictures) == 3  # the image overlay, its kept-token map, the video's kept-token sheet
    budgets = _text(code[3]).splitlines()
    assert [line.split(":")[0] for line in budgets] == ["budget None", "budget 192", "budget 64", "budget 16"]
    assert "576 visual tokens" in budgets[0] and " 16 visual tokens" in budgets[3]
    video = _text(code[4])
    assert "[['Sure, [SEG].<|end|>']] [True] (1, 8, 90, 120)" in video and "frames with a mask: 0" not in video
