"""Run a notebook with parameters and publish it: a self-contained HTML file plus the PNGs.

nbclient executes, nbconvert exports; papermill would add little on top (its parameter
injection is the few lines of `inject_parameters`, done the same way: a cell tagged
``injected-parameters`` after the one tagged ``parameters``), so the notebooks stay
papermill-compatible without the dependency.

The kernel is this very interpreter (`_ThisInterpreterKernel`: a kernel spec built in
memory with ``sys.executable``), so the report runs with the venv it was started from and
never reads or writes the user's Jupyter kernels or config; its connection file and
IPython directory live in a temporary directory. Figures use the Agg backend
(``MPLBACKEND=Agg``; `parsec.analysis.plots` draws on Agg canvases anyway).

The HTML uses ``templates/parsec_report``: nbconvert's lab template without the scripts it
would load from the web, so the file opens offline; images are inline data URIs.
"""

from __future__ import annotations

import ast
import copy
import os
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from parsec.analysis.load import DataError

# nbformat, nbclient, nbconvert and jupyter_client are imported where they are used: they are
# the optional `analysis` dependencies (`parsec report` names them when missing)

PACKAGE_ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK_DIR = PACKAGE_ROOT / "notebooks"
NOTEBOOKS = {"weekly": "weekly_report.ipynb", "fleets": "fleet_comparison.ipynb"}
TEMPLATES = Path(__file__).resolve().parent / "templates"
INJECTED_TAG = "injected-parameters"


class ReportError(RuntimeError):
    """A notebook could not be executed or exported; the message is one line."""


@dataclass
class Report:
    """What one executed notebook left in the output folder."""

    name: str
    html: Path
    notebook: Path
    figures: list[Path] = field(default_factory=list)
    tables: list[Path] = field(default_factory=list)


def notebook_path(name: str) -> Path:
    """A shipped notebook by short name (``weekly``, ``fleets``) or any ``.ipynb`` path."""
    if name in NOTEBOOKS:
        path = NOTEBOOK_DIR / NOTEBOOKS[name]
    else:
        path = Path(name).expanduser()
    if not path.is_file():
        known = ", ".join(NOTEBOOKS)
        raise DataError(f"no notebook {name!r} (use {known}, or the path of an .ipynb file)")
    return path


def _parameters_cell(nb) -> int | None:
    for index, cell in enumerate(nb.cells):
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            return index
    return None


def parameter_names(nb) -> set[str]:
    """The names the ``parameters`` cell assigns (what a caller may override)."""
    index = _parameters_cell(nb)
    if index is None:
        return set()
    names = set()
    for node in ast.walk(ast.parse(nb.cells[index].source)):
        if isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return names


def inject_parameters(nb, parameters: dict):
    """A copy of ``nb`` with an ``injected-parameters`` cell after the ``parameters`` cell
    (or first, when there is none) that assigns ``parameters`` as Python literals."""
    import nbformat

    known = parameter_names(nb)
    unknown = sorted(set(parameters) - known)
    if unknown:
        raise DataError(f"the notebook takes no parameter(s) {', '.join(unknown)} "
                        f"(it takes: {', '.join(sorted(known)) or 'none'})")
    nb = copy.deepcopy(nb)
    nb.cells = [c for c in nb.cells if INJECTED_TAG not in c.get("metadata", {}).get("tags", [])]
    source = "# Parameters\n" + "".join(f"{name} = {value!r}\n" for name, value in parameters.items())
    cell = nbformat.v4.new_code_cell(source, metadata={"tags": [INJECTED_TAG]})
    index = _parameters_cell(nb)
    nb.cells.insert(0 if index is None else index + 1, cell)
    return nb


def _kernel_manager_class(runtime_dir: Path):
    """An AsyncKernelManager whose kernel is ``sys.executable -m ipykernel_launcher``."""
    from jupyter_client.kernelspec import KernelSpec
    from jupyter_client.manager import AsyncKernelManager

    class _ThisInterpreterKernel(AsyncKernelManager):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            name = f"kernel-{os.getpid()}-{id(self)}"
            self.connection_file = str(runtime_dir / f"{name}.json")
            # unix sockets in our temporary directory: no TCP port, nothing readable by others
            self.transport, self.ip = "ipc", str(runtime_dir / name)

        @property
        def kernel_spec(self) -> KernelSpec:
            return KernelSpec(argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                              display_name=f"Python ({sys.executable})", language="python",
                              metadata={"debugger": False})

    return _ThisInterpreterKernel


def _kernel_env(runtime_dir: Path, extra: dict[str, str] | None) -> dict[str, str]:
    env = dict(os.environ)
    path = env.get("PYTHONPATH")
    env.update(MPLBACKEND="Agg", IPYTHONDIR=str(runtime_dir / "ipython"), PYDEVD_DISABLE_FILE_VALIDATION="1",
               PYTHONPATH=str(PACKAGE_ROOT) + (os.pathsep + path if path else ""))
    env.update(extra or {})
    return env


def _first_line(cell) -> str:
    for line in cell.source.splitlines():
        text = line.strip()
        if text and not text.startswith("#"):
            return text[:60]
    return ""


def export_html(nb, path: Path, *, title: str, show_code: bool) -> Path:
    """The executed notebook as one HTML file (code hidden unless ``show_code``)."""
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(template_name="parsec_report", extra_template_basedirs=[str(TEMPLATES)],
                            exclude_input=not show_code, exclude_input_prompt=True, exclude_output_prompt=True)
    html, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": title}})
    path.write_text(html, encoding="utf-8")
    return path


def execute(path: Path, parameters: dict, output_dir: Path, *, progress: Callable[[str], None] = print,
            timeout: float = 600, show_code: bool = False, env: dict[str, str] | None = None) -> Report:
    """Execute the notebook at ``path`` with ``parameters`` in ``output_dir`` (its working
    directory) and write ``<name>.ipynb`` and ``<name>.html`` there. On a failing cell the
    executed part is kept as ``<name>.failed.ipynb`` and a ReportError names the cell."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    output_dir = Path(output_dir).resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    name = Path(path).stem
    nb = inject_parameters(nbformat.read(path, as_version=4), parameters)
    code = [i for i, cell in enumerate(nb.cells) if cell.cell_type == "code"]
    current = {"cell": 0}

    def on_cell(cell, cell_index, **_):
        current["cell"] = code.index(cell_index) + 1 if cell_index in code else current["cell"]
        progress(f"{name}: cell {current['cell']}/{len(code)} {_first_line(cell)}")

    with tempfile.TemporaryDirectory(prefix="parsec-report-") as runtime:
        runtime_dir = Path(runtime)
        client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                kernel_manager_class=_kernel_manager_class(runtime_dir),
                                resources={"metadata": {"path": str(output_dir)}}, on_cell_execute=on_cell)
        try:
            client.execute(env=_kernel_env(runtime_dir, env))
        except CellExecutionError as error:
            failed = output_dir / f"{name}.failed.ipynb"
            nbformat.write(nb, failed)
            raise ReportError(f"{name}: cell {current['cell']} failed: {error.ename}: "
                              f"{(error.evalue or '').strip().splitlines()[0] if error.evalue else ''} "
                              f"(the notebook with the error: {failed})") from None
        except (CellTimeoutError, DeadKernelError, RuntimeError, TimeoutError) as error:
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise ReportError(f"{name}: the kernel did not finish cell {current['cell']}: {reason}") from None
    executed = output_dir / f"{name}.ipynb"
    nbformat.write(nb, executed)
    html = export_html(nb, output_dir / f"{name}.html", title=f"parsec {name.replace('_', ' ')}",
                       show_code=show_code)
    figures_dir = Path(parameters.get("output_dir", output_dir))
    figures_dir = figures_dir if figures_dir.is_absolute() else output_dir / figures_dir
    return Report(name, html, executed, sorted(figures_dir.glob("*.png")), sorted(figures_dir.glob("*.csv")))
