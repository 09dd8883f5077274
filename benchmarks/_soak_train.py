"""``plastispoof train`` with the phase it is in written to a file, for the kill soak (benchmarks/kill_soak.py).

The soak aims its kills at moments (a training step, a checkpoint write, dev evaluation) and counts what it
hit; this wrapper wraps those functions of the toolkit so each writes its name to ``$KILL_SOAK_PHASE_FILE`` while
it runs. Nothing in the toolkit itself knows about the soak.
"""

from __future__ import annotations

import functools
import os
import sys

FD = os.open(os.environ["KILL_SOAK_PHASE_FILE"], os.O_RDWR | os.O_CREAT, 0o644)
current = ["start-up"]


def mark(name: str) -> None:
    os.pwrite(FD, name.encode().ljust(32), 0)


def wrap(owner, attribute: str, phase: str) -> None:
    original = getattr(owner, attribute)

    @functools.wraps(original)
    def wrapped(*args, **kwargs):
        previous, current[0] = current[0], phase
        mark(phase)
        try:
            return original(*args, **kwargs)
        finally:
            current[0] = previous
            mark(previous)

    setattr(owner, attribute, wrapped)


mark("start-up")
from plastispoof import runs  # noqa: E402
from plastispoof.cli import main  # noqa: E402
from plastispoof.training import optim, trainer  # noqa: E402

wrap(trainer, "dev_eer", "dev evaluation")
wrap(trainer, "window_mean_dev_threshold", "dev evaluation")
wrap(runs, "save_checkpoint", "checkpoint write")
wrap(runs, "save_weights", "checkpoint write")
wrap(optim.Optimisation, "step", "training step")
current[0] = "other"
mark("other")
sys.argv = ["plastispoof", *sys.argv[1:]]
main()
