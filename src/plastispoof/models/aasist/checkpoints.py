"""Foreign ``.pth`` state_dicts (the official AASIST and AASIST-L checkpoints), read without running pickled code."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from plastispoof.errors import InputError
from plastispoof.models.base import SpoofModel, build_model

# Models whose official checkpoints this file knows; used to say which model a mismatched file fits.
OFFICIAL_MODELS = ("aasist", "aasist-l")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A foreign ``.pth`` state_dict, read without running any pickled code (``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"weights file {path} does not exist or is not a file")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # whatever torch.load trips over, the file is not a state_dict it can read safely
        raise InputError(f"{path} is not a PyTorch state_dict readable with weights_only=True "
                         f"(torch.load raised {type(err).__name__})") from None
    if not isinstance(loaded, Mapping):
        raise InputError(f"{path} is not a PyTorch state_dict: it holds a {type(loaded).__name__}")
    if not loaded:
        raise InputError(f"{path} is an empty state_dict")
    not_tensors = [str(key) for key, value in loaded.items() if not isinstance(value, torch.Tensor)]
    if not_tensors:
        raise InputError(f"{path} is not a plain PyTorch state_dict: {len(not_tensors)} entries are not tensors, "
                         f"e.g. {', '.join(not_tensors[:3])}")
    return dict(loaded)


def state_dict_mismatches(model: nn.Module, state: Mapping[str, torch.Tensor]) -> list[str]:
    """One short line per key that is missing, unexpected or of another shape; empty when ``state`` fits."""
    expected = model.state_dict()
    problems = [f"missing {key}" for key in expected if key not in state]
    problems += [f"unexpected {key}" for key in state if key not in expected]
    problems += [f"{key}: file {tuple(state[key].shape)} vs model {tuple(tensor.shape)}"
                 for key, tensor in expected.items() if key in state and state[key].shape != tensor.shape]
    return problems


def mismatch_counts(problems: list[str]) -> str:
    """How many tensors of each kind :func:`state_dict_mismatches` found.

    >>> mismatch_counts(["missing a", "missing b", "unexpected c", "d: file (1,) vs model (2,)"])
    '2 missing, 1 unexpected, 1 of another shape'
    """
    missing = sum(p.startswith("missing ") for p in problems)
    unexpected = sum(p.startswith("unexpected ") for p in problems)
    return f"{missing} missing, {unexpected} unexpected, {len(problems) - missing - unexpected} of another shape"


def load_official(model_name: str, path: str | Path) -> SpoofModel:
    """Build ``model_name`` with its default config and load a foreign ``.pth`` state_dict into it strictly.

    Returns the model in eval mode. A file that is not a state_dict, or one that does not fit the model exactly
    (a missing, unexpected or differently shaped tensor), raises :class:`InputError` saying which known
    official model it fits instead, if any.
    """
    model = build_model(model_name)
    state = read_state_dict(path)
    problems = state_dict_mismatches(model, state)
    if problems:
        fits = [name for name in OFFICIAL_MODELS
                if name != model_name and not state_dict_mismatches(build_model(name), state)]
        hint = f"it fits model {fits[0]!r} instead" if fits else "it fits no known official model either"
        raise InputError(f"{Path(path).name} does not fit model {model_name!r}: {mismatch_counts(problems)} (the "
                         f"file holds {len(state)} tensors, the model {len(model.state_dict())}; e.g. "
                         f"{'; '.join(problems[:2])}); {hint}")
    model.load_state_dict(state, strict=True)
    return model.eval()
