"""The notebooks run where Jupyter opens them (issue 20): the kernel starts in the
notebook's folder, finds the demo's data one level up without a setting, and papermill
runs them with parameters from the repository's own ``notebooks/`` folder."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from tests.analysis import dataset
from tests.analysis.jupyter import NOTEBOOKS, REPO, demo_layout, errors, figures, jupyter_env, nbconvert

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_nbconvert_in_the_notebooks_folder_finds_the_demo_dataset(name, tmp_path):
    notebooks, parquet = demo_layout(tmp_path / "checkout")
    dataset.write(parquet)
    env = jupyter_env(tmp_path / "jupyter")
    nb = nbconvert(notebooks, name, env)
    assert errors(nb) == []
    assert figures(nb) >= 3
    shown = "".join(str(out.get("data", {}).get("text/markdown", "")) for cell in nb.cells
                    for out in cell.get("outputs", []))
    assert "**Data**: the Parquet dataset" in shown and str(parquet) in shown
    assert (notebooks / name).is_dir()  # its figures and tables, beside the notebook


def test_without_data_the_error_names_the_parameter_to_edit(tmp_path):
    notebooks, _ = demo_layout(tmp_path / "empty-checkout")
    env = jupyter_env(tmp_path / "jupyter", PARSEC_PARQUET_DIR=str(tmp_path / "nothing-here"))
    result = subprocess.run([str(Path(sys.executable).with_name("jupyter")), "nbconvert", "--to", "notebook",
                             "--execute", "weekly_report.ipynb"], cwd=notebooks, env=env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode != 0
    assert "Cell In[" not in result.stderr and "---->" not in result.stderr  # the cell shows one line
    assert f"DataError: no Parquet dataset at {tmp_path / 'nothing-here'}: set parquet_dir in the notebook's " \
           "parameters cell" in result.stderr


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_papermill_runs_the_repository_notebooks_with_parameters(name, tmp_path):
    parquet = dataset.write(tmp_path / "data")
    env = jupyter_env(tmp_path / "jupyter")
    out = tmp_path / f"{name}.out.ipynb"
    result = subprocess.run([sys.executable, "-m", "papermill", f"{name}.ipynb", str(out), "-p", "parquet_dir",
                             str(parquet), "-p", "output_dir", str(tmp_path / "figures"), "-p", "rt_size_min", "51"],
                            cwd=REPO / "notebooks", env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    nb = nbformat.read(out, as_version=4)
    assert errors(nb) == [] and figures(nb) >= 3
    injected = [cell for cell in nb.cells if "injected-parameters" in cell.metadata.get("tags", [])]
    assert len(injected) == 1 and str(parquet) in injected[0].source
    assert "rt_size_min = 51" in injected[0].source
    assert any((tmp_path / "figures").glob("*.png"))
    assert not (REPO / "notebooks" / name).exists()  # nothing written into the repository
