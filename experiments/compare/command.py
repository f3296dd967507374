"""``tierenv compare`` behind its command line: run a config into a results folder, resuming
an interrupted run of the same config.

Finished tasks are kept in ``.NAME.partial/`` beside the results folder as they finish
(``checkpoint``); the results folder is replaced as a whole at the end (``folders``), and
the checkpoint is deleted once the results are in place. Resuming is automatic because it
cannot change a number: a kept task is reused only if the config's episode-deciding parts,
the files its policies load and the code are the same as when it ran; otherwise the kept
tasks are discarded with a message. ``fresh`` discards them in any case.
"""

from __future__ import annotations

from pathlib import Path

from experiments.compare.checkpoint import Checkpoint, partial_dir
from experiments.compare.config import CompareConfig
from experiments.compare.folders import check_replaceable
from experiments.compare.report import (
    Summary,
    is_results_file,
    is_tensorboard_file,
    write_results,
)
from experiments.compare.runner import run_compare


def compare_to_folder(
    config: CompareConfig,
    out: str | Path,
    command: str,
    tensorboard_dir: str | Path | None = None,
    workers: int | None = None,
    use_ray: bool = False,
    ray_address: str | None = None,
    show_progress: bool = True,
    fresh: bool = False,
) -> Summary:
    """Run ``config`` and write its results to ``out`` (and TensorBoard logs to
    ``tensorboard_dir``); returns the summary. Tasks finished by an interrupted run of the
    same config into the same ``out`` are reused unless ``fresh``."""
    out = Path(out)
    # Refuse an unusable output folder before spending the run on it.
    check_replaceable(out, is_results_file, "results folder")
    if tensorboard_dir is not None:
        check_replaceable(tensorboard_dir, is_tensorboard_file, "TensorBoard folder")
    checkpoint = Checkpoint(partial_dir(out), fresh=fresh)
    results = run_compare(
        config,
        workers=workers,
        use_ray=use_ray,
        ray_address=ray_address,
        show_progress=show_progress,
        checkpoint=checkpoint,
    )
    summary = write_results(results, out, command=command, tensorboard_dir=tensorboard_dir)
    checkpoint.discard()  # the results are in place; a kill before this only costs a rerun
    return summary
