"""Training: :func:`train` runs a config's strategy, stage by stage, and leaves a run directory.

* :mod:`~plastispoof.training.trainer` -- the stage and epoch loop (:class:`Trainer`), the dev scores;
* :mod:`~plastispoof.training.optim` -- optimiser, parameter groups, learning-rate schedule, the timed step;
* :mod:`~plastispoof.training.losses` -- the classification loss, class weights, methods' auxiliary losses;
* :mod:`~plastispoof.training.progress` -- where a run stands (checkpointed), best dev EER and early stopping;
* :mod:`~plastispoof.training.distributed` -- the device and the ``torchrun`` process group;
* :mod:`~plastispoof.training.seeding` -- seeds and generator states.

The run directory is written by :class:`plastispoof.runs.RunRecorder`; the loader by
:func:`plastispoof.training.loaders.training_data`.
"""

from plastispoof.training.trainer import Trainer, train

__all__ = ["Trainer", "train"]
