"""`vae-assignment demo`: build the release, run the solution notebook, grade a few examples."""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import nbformat

from assignment.notebook import SOURCE_NOTEBOOK_NAME, build_notebook
from assignment.release import build_release
from autograder import catalogue, outputs
from autograder.batch import grade_all
from autograder.collect import find_submissions
from autograder.notebook_execution import execute_source_notebook
from autograder.settings import Settings

EXAMPLE_MISTAKES = ("kl_missing_half", "reparam_shared_noise", "iwae_missing_log_k", "vae_decoder_sigmoid")


def printed_lines(notebook: nbformat.NotebookNode, grade_id: str) -> list[str]:
    """The text a cell printed, line by line."""
    for cell in notebook.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == grade_id:
            text = "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream")
            return text.splitlines()
    return []


def write_examples(folder: Path, release: Path) -> None:
    """The reference notebook, the release's stubs and a few catalogued mistakes."""
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(build_notebook(), folder / "reference.ipynb")
    shutil.copy(release / SOURCE_NOTEBOOK_NAME, folder / "stubs.ipynb")
    chosen = [v for v in catalogue.MISTAKES if v.name in EXAMPLE_MISTAKES]
    catalogue.write_submissions(folder, chosen)


def run_demo(out: Path, settings: Settings) -> int:
    out = out.resolve()
    release = build_release(out / "release")
    print(f"student release: {release}  (zip: {release.parent / 'vae.zip'})")

    started = time.perf_counter()
    executed = execute_source_notebook(out / "solution-run")
    print(f"solution notebook ran end to end in {time.perf_counter() - started:.0f} s "
          f"(executed copy: {out / 'solution-run' / SOURCE_NOTEBOOK_NAME})")
    nbformat.write(executed, out / "solution-run" / SOURCE_NOTEBOOK_NAME)
    for line in printed_lines(executed, "train_model"):
        print(f"  reference VAE: {line}")

    examples = out / "examples"
    write_examples(examples, release)
    records, _ = grade_all(find_submissions([examples]), jobs=2, settings=settings)
    outputs.write_json(out / "grades.json", records)
    outputs.write_csv(out / "grades.csv", records)
    print(f"\ngraded the example submissions in {examples}:")
    print(outputs.summary_table(records))
    print(f"grades: {out / 'grades.json'}, {out / 'grades.csv'}")
    return 0
