"""Run a notebook as Jupyter does: its kernel started in the notebook's own folder, the
kernel the notebook names ("parsec", registered as scripts/jupyter.sh registers it, here
in a private Jupyter data folder)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = ("weekly_report", "fleet_comparison")


def jupyter_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of a Jupyter whose own kernels live in ``data_dir``, with the
    ``parsec`` kernel registered there; no PARSEC_PARQUET_DIR or scheduler setting leaks in."""
    env = {k: v for k, v in os.environ.items() if k not in ("PARSEC_PARQUET_DIR", "PARSEC_SCHEDULER_PARQUET_DIR")}
    env.update(JUPYTER_DATA_DIR=str(data_dir), **extra)
    if not (data_dir / "kernels" / "parsec").is_dir():
        subprocess.run([sys.executable, "-m", "ipykernel", "install", "--user", "--name", "parsec",
                        "--display-name", "Python 3 (parsec)"], env=env, check=True, capture_output=True)
    return env


def demo_layout(root: Path) -> tuple[Path, Path]:
    """A checkout as a user has it after the demo: ``root/notebooks`` (the notebooks) and
    ``root/.parsec/parquet`` (where the demo's data goes); returns both."""
    notebooks = root / "notebooks"
    notebooks.mkdir(parents=True)
    for name in NOTEBOOKS:
        shutil.copy(REPO / "notebooks" / f"{name}.ipynb", notebooks)
    return notebooks, root / ".parsec" / "parquet"


def nbconvert(folder: Path, name: str, env: dict[str, str]) -> nbformat.NotebookNode:
    """``jupyter nbconvert --to notebook --execute NAME.ipynb`` run in ``folder``; the
    executed notebook (written beside it as NAME.nbconvert.ipynb)."""
    result = subprocess.run([str(Path(sys.executable).with_name("jupyter")), "nbconvert", "--to", "notebook",
                             "--execute", f"{name}.ipynb", "--ExecutePreprocessor.timeout=600"],
                            cwd=folder, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return nbformat.read(folder / f"{name}.nbconvert.ipynb", as_version=4)


def figures(nb: nbformat.NotebookNode) -> int:
    """How many images the executed notebook shows."""
    return sum("image/png" in output.get("data", {}) for cell in nb.cells if cell.cell_type == "code"
               for output in cell.get("outputs", []))


def errors(nb: nbformat.NotebookNode) -> list[str]:
    return [f"{output.get('ename')}: {output.get('evalue')}" for cell in nb.cells if cell.cell_type == "code"
            for output in cell.get("outputs", []) if output.get("output_type") == "error"]
