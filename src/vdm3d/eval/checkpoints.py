"""Per-case checkpoints of an evaluation, so that ``vdm3d eval SUB --resume`` continues after the last finished case.

An evaluation that loops over cases inside a :class:`~vdm3d.io.runs.RunFolder` saves each finished case's
result (the JSON-able dict it adds to the results, and any small arrays the final table or strip needs) as
``checkpoints/stage-case-NNNN.safetensors`` in the run's partial folder, one file per case, written atomically
(:meth:`~vdm3d.io.runs.RunFolder.save_stage`). A Ctrl-C, a full disk or a crash then keeps the partial
folder; the same command with ``--resume`` loads the finished cases instead of computing them again and
runs the rest. The case results are deterministic at a fixed thread count, so the final results equal an
uninterrupted run's. A resume with other options is refused by the run folder itself.

>>> cases = CaseCheckpoints(run)                                   # doctest: +SKIP
>>> for i, case in enumerate(todo):
...     saved = cases.load(i, case.name)
...     row = saved.result if saved else cases.save(i, case.name, run_case(case))
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vdm3d.errors import ConfigError
from vdm3d.io.progress import FROM_CHECKPOINT
from vdm3d.io.runs import RunFolder

__all__ = ["FROM_CHECKPOINT", "CaseCheckpoints", "SavedCase"]


@dataclass
class SavedCase:
    """A case an interrupted run finished: its result as it was saved, and its arrays (torch tensors)."""

    result: Any
    arrays: dict[str, Any] = field(default_factory=dict)


class CaseCheckpoints:
    """The finished cases of one evaluation run, one checkpoint file per case.

    Cases are numbered in the order the evaluation runs them; each is saved with its ``name`` too, so a
    resumed run whose case list differs at that place (a manifest or mesh folder changed) is refused
    instead of mixing two runs' cases. ``run`` None (an evaluation writing no run folder: no ``--out``)
    keeps nothing, so the loop reads the same either way.
    """

    def __init__(self, run: RunFolder | None):
        self.run = run

    @staticmethod
    def _stage(index: int) -> str:
        return f"case-{index:04d}"

    def load(self, index: int, name: str) -> SavedCase | None:
        """Case ``index``'s saved result when the run resumes an interrupted one that finished it, else None."""
        saved = None if self.run is None else self.run.load_stage(self._stage(index))
        if saved is None:
            return None
        arrays, meta = saved
        if meta.get("case") != name:
            raise ConfigError(f"{self.run.out}: case {index + 1} of the interrupted run there was "
                              f"{meta.get('case')!r}, and of this one it is {name!r} (the case list changed); "
                              "resume with the same cases, or run without --resume (and with --overwrite) to "
                              "start again.")
        return SavedCase(meta["result"], arrays)

    def save(self, index: int, name: str, result: Any, arrays: dict[str, Any] | None = None) -> Any:
        """Keep case ``index``'s ``result`` (JSON-able) and ``arrays`` (name -> tensor); returns ``result``.

        The result is stored as JSON, so a loaded case equals the saved one as JSON (tuples come back as lists).
        """
        if self.run is not None:
            self.run.save_stage(self._stage(index), dict(arrays or {}), case=name, result=result)
        return result
