"""Turn a finished, calibrated run into a shipped detector folder (``src/plastispoof/shipped/<name>/``).

Only what scoring needs is copied: ``meta.json`` (model, growth transforms, input, dev threshold),
``model.safetensors`` and ``calibration.json``; the card gets the SHA-256 of each (checked at load time) and the
sections the caller measured (training data, held-out results, what the detector is not for).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from plastispoof.errors import InputError
from plastispoof.fileio import atomic_write_json, atomic_write_text
from plastispoof.shipped import CARD, CHECKED_FILES, sha256_of

AASIST_NOTICE = """This detector starts from the official AASIST checkpoint:

  AASIST: Audio Anti-Spoofing using Integrated Spectro-Temporal Graph Attention Networks
  Jee-weon Jung, Hee-Soo Heo, Hemlata Tak, Hye-jin Shim, Joon Son Chung, Bong-Jin Lee, Ha-Jin Yu, Nicholas Evans
  ICASSP 2022. https://github.com/clovaai/aasist

  File AASIST.pth, SHA-256 {sha256}
  Copyright (c) 2021-present NAVER Corp.
  Licensed under the MIT License:

  Permission is hereby granted, free of charge, to any person obtaining a copy of this software and associated
  documentation files (the "Software"), to deal in the Software without restriction, including without limitation
  the rights to use, copy, modify, merge, publish, distribute, sublicense, and/or sell copies of the Software, and
  to permit persons to whom the Software is furnished to do so, subject to the following conditions:

  The above copyright notice and this permission notice shall be included in all copies or substantial portions
  of the Software.

  THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED, INCLUDING BUT NOT LIMITED TO
  THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
  AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION OF
  CONTRACT, TORT OR OTHERWISE, ARISING FROM, OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER
  DEALINGS IN THE SOFTWARE.

The published weights are kept as they are; the weights added here (dropin-frozen filters in the last encoder
block, the output head and batch-norm statistics) were trained by plastispoof on Debian's Asterisk prompts
(see card.json for their sources and licences).
"""


def package_run(run_dir: str | Path, out: str | Path, card: dict[str, Any], source_sha256: str | None = None,
                max_bytes: int = 5_000_000) -> Path:
    """Write ``out`` (meta.json, model.safetensors, calibration.json, card.json, NOTICE) from ``run_dir``.

    ``card``: the card's fields (typically :func:`plastispoof.card.run_card` of the run plus the measured
    sections); the file hashes are added here. Refuses a run without a calibration or weights over ``max_bytes``.
    """
    run_dir, out = Path(run_dir), Path(out)
    for name in ("meta.json", "model.safetensors", "calibration.json"):
        if not (run_dir / name).is_file():
            raise InputError(f"{run_dir} has no {name}: train and calibrate it before shipping it")
    if (run_dir / "model.safetensors").stat().st_size > max_bytes:
        raise InputError(f"{run_dir / 'model.safetensors'} is over {max_bytes / 1e6:g} MB: too large to ship")
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(run_dir / "meta.json", out / "meta.json")
    shutil.copyfile(run_dir / "model.safetensors", out / "model.safetensors")
    calibration = json.loads((run_dir / "calibration.json").read_text())
    atomic_write_json(out / "calibration.json", calibration)
    files = {name: sha256_of(out / name) for name in CHECKED_FILES}
    atomic_write_json(out / CARD, {**card, "files": files})
    if source_sha256:
        atomic_write_text(out / "NOTICE", AASIST_NOTICE.format(sha256=source_sha256))
    return out
