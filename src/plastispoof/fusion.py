"""``plastispoof fuse``: several systems' score files -> one calibrated LLR score file.

Logistic-regression fusion as in the ASVspoof 5 baselines and BOSARIS: ``llr = sum_k w_k * score_k + b``, the
weights fitted on the dev trials (those the dev key lists) with the prior-weighted cross-entropy of
:func:`plastispoof.calibration.fit_logistic` (scipy's L-BFGS-B). One input file is plain calibration. Every
utterance that all the files score gets a fused LLR (dev and eval alike); an utterance scored by some files
but not others is an error, as is a NaN score (named) or a dev key with one class.

Writes the fused score file (``utt_id llr`` lines) and, beside it, ``<out>.fusion.json``: inputs, weights,
offset, prior, dev counts, and the dev EER / Cllr / min Cllr of each input and of the fusion.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from plastispoof.calibration import fit_logistic
from plastispoof.data.protocols import read_protocol_file
from plastispoof.data.trials import BONAFIDE
from plastispoof.errors import InputError
from plastispoof.fileio import atomic_write_json
from plastispoof.metrics import cllr, compute_eer, min_cllr
from plastispoof.score_files import read_scores, write_scores


def fuse_score_files(score_files: list[str | Path], dev_key: str | Path, out: str | Path, *, prior: float = 0.5,
                     format: str = "auto") -> dict[str, Any]:
    """Fit the fusion on the dev key's trials, write the fused LLRs of every common utterance; return the
    summary that goes into ``<out>.fusion.json``."""
    if not score_files:
        raise InputError("give at least one score file to fuse")
    systems = [read_scores(path) for path in score_files]  # NaN scores are refused there, naming the utterance
    ids = list(systems[0])
    for path, system in zip(score_files[1:], systems[1:]):
        if set(system) != set(ids):
            only_here = sorted(set(system) - set(ids))[:3]
            missing = sorted(set(ids) - set(system))[:3]
            raise InputError(f"{path} scores other utterances than {score_files[0]} "
                             f"(missing e.g. {', '.join(missing) or '-'}; extra e.g. {', '.join(only_here) or '-'})")
    trials = read_protocol_file(Path(dev_key), format)
    absent = [t.utt_id for t in trials if t.utt_id not in systems[0]]
    if absent:
        raise InputError(f"{len(absent)} dev-key trials have no score, e.g. {', '.join(absent[:3])}")
    labels = np.array([t.label == BONAFIDE for t in trials])
    dev = np.array([[system[t.utt_id] for system in systems] for t in trials])
    weights, offset = fit_logistic(dev, labels, prior)
    every = np.array([[system[utt] for system in systems] for utt in ids])
    fused = every @ weights + offset
    write_scores(out, dict(zip(ids, fused.tolist())))

    def describe(values: np.ndarray) -> dict[str, float]:
        bonafide, spoof = values[labels], values[~labels]
        return {"dev_eer": compute_eer(bonafide, spoof)[0], "dev_cllr": cllr(bonafide, spoof),
                "dev_min_cllr": min_cllr(bonafide, spoof)}

    summary = {
        "kind": "plastispoof-fusion", "inputs": [str(p) for p in score_files], "dev_key": str(dev_key),
        "weights": weights.tolist(), "offset": offset, "prior": prior,
        "n_bonafide": int(labels.sum()), "n_spoof": int((~labels).sum()), "n_fused": len(ids),
        "solver": "scipy.optimize.minimize (L-BFGS-B), prior-weighted logistic regression (BOSARIS)",
        "per_input": [describe(dev[:, k]) for k in range(dev.shape[1])],
        "fused": describe(dev @ weights + offset), "output": str(out),
    }
    atomic_write_json(Path(f"{out}.fusion.json"), summary)
    return summary


def format_fusion(summary: dict[str, Any]) -> str:
    lines = [f"fused {len(summary['inputs'])} systems into {summary['output']} ({summary['n_fused']} utterances; "
             f"fitted on {summary['n_bonafide']} bona fide + {summary['n_spoof']} spoof dev trials, prior "
             f"{summary['prior']:g})",
             f"  {'system':<40} {'weight':>9} {'dev EER %':>9} {'Cllr':>7} {'min Cllr':>8}"]
    for path, weight, row in zip(summary["inputs"], summary["weights"], summary["per_input"]):
        lines.append(f"  {Path(path).name[:40]:<40} {weight:9.4f} {100 * row['dev_eer']:9.2f} {row['dev_cllr']:7.3f} "
                     f"{row['dev_min_cllr']:8.3f}")
    row = summary["fused"]
    lines.append(f"  {'fusion (offset ' + format(summary['offset'], '.4f') + ')':<40} {'':>9} "
                 f"{100 * row['dev_eer']:9.2f} {row['dev_cllr']:7.3f} {row['dev_min_cllr']:8.3f}")
    return "\n".join(lines)
