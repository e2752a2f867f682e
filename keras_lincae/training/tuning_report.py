"""Tables and the best preset of a ``keras_lincae.training.tuning`` search.

``trials.md`` / ``trials.csv`` (one row per trial, best first) and ``best.json`` in the tuner
folder, and the best trial's preset copied to a preset folder (:func:`write_best_preset`).
"""

import csv
import io
import json
import os

from keras_lincae import LinCAE
from keras_lincae.training.tuning import OBJECTIVE_NAME

_METRIC_COLUMNS = ("score", "val_loss", "val_loss_ratio", "enc_add", "dec_add", "dec_hom",
                   "enc_hom", "dec_hom_snr_db", "add_si_sdr_db", "params", "train_steps", "seconds")


def _status(trial):
    status = trial.status
    return getattr(status, "value", status)


def summary_rows(tuner):
    """One dict per trial, finished trials by score (best first), then the others by id."""
    rows = []
    for trial_id, trial in sorted(tuner.oracle.trials.items()):
        row = {"trial": trial_id, "status": str(_status(trial))}
        values = trial.hyperparameters.values
        for name in ("bottleneck_channels", "base_channels", "bottleneck_base_channels"):
            if name in values:
                row[name] = values[name]
        if "tuner/epochs" in values:  # hyperband: budget in units of `steps`, parent trial
            row["hb_epochs"] = values["tuner/epochs"]
            row["hb_parent"] = values.get("tuner/trial_id", "")
        for name in _METRIC_COLUMNS:
            if trial.metrics.exists(name):
                row[name] = trial.metrics.get_last_value(name)
        rows.append(row)
    scored = sorted((r for r in rows if r.get("score") is not None), key=lambda r: r["score"])
    return scored + [r for r in rows if r.get("score") is None]


def _columns(rows):
    names = []
    for row in rows:
        names.extend(k for k in row if k not in names)
    return names


def _fmt(value):
    if value is None:
        return ""
    if isinstance(value, float):
        if value.is_integer() and abs(value) >= 1:
            return str(int(value))
        return f"{value:.4g}"
    return str(value)


def format_markdown(rows):
    """The trials as a Markdown table (the best trial marked with ``*``)."""
    if not rows:
        return "(no trials)\n"
    cols = _columns(rows)
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for i, row in enumerate(rows):
        cells = [_fmt(row.get(c)) for c in cols]
        if i == 0 and row.get("score") is not None:
            cells[0] += " *"
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def format_csv(rows):
    """The trials as CSV (full precision)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=_columns(rows), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def best_trial(tuner):
    """The finished trial with the lowest score; raises RuntimeError if none finished."""
    best = tuner.oracle.get_best_trials(1)
    if not best or not best[0].metrics.exists(OBJECTIVE_NAME):
        failures = [f"trial {t.trial_id} ({_status(t)}): {(t.message or '').strip().splitlines()[-1:]}"
                    for t in tuner.oracle.trials.values()]
        raise RuntimeError("no trial finished; " + ("; ".join(failures) or "no trial ran"))
    return best[0]


def write_summary(tuner, rows=None):
    """Write ``trials.md``, ``trials.csv`` and ``best.json`` in the tuner folder; return paths."""
    rows = summary_rows(tuner) if rows is None else rows
    project_dir = tuner.project_dir
    paths = {"markdown": os.path.join(project_dir, "trials.md"),
             "csv": os.path.join(project_dir, "trials.csv"),
             "best": os.path.join(project_dir, "best.json")}
    s = tuner.settings
    header = (f"# Lin-CAE tuning: {s.tuner} search, {len(rows)} trials\n\n"
              f"score = val_loss_ratio + {s.lambda_add:g} * (enc_add + dec_add) + "
              f"{s.lambda_hom:g} * dec_hom (lower is better; best first, marked *)\n\n")
    with open(paths["markdown"], "w") as f:
        f.write(header + format_markdown(rows))
    with open(paths["csv"], "w") as f:
        f.write(format_csv(rows))
    try:
        best = best_trial(tuner)
        info = {"trial": best.trial_id, "hyperparameters": best.hyperparameters.values,
                "score": best.score, "preset": tuner.trial_preset_dir(best.trial_id)}
    except RuntimeError as e:
        info = {"error": str(e)}
    with open(paths["best"], "w") as f:
        json.dump(info, f, indent=1)
    return paths


def write_best_preset(tuner, preset_dir):
    """Copy the best trial's trained model to ``preset_dir`` as a preset; return its path.

    The preset's ``metadata.json`` records the trial, its sizes and metrics, and the objective.
    """
    best = best_trial(tuner)
    model = LinCAE.from_preset(tuner.trial_preset_dir(best.trial_id))
    metrics = {name: best.metrics.get_last_value(name) for name in _METRIC_COLUMNS
               if best.metrics.exists(name)}
    s = tuner.settings
    return model.save_to_preset(
        os.fspath(preset_dir),
        overwrite=True,
        tuning={
            "trial": best.trial_id,
            "tuner": s.tuner,
            "hyperparameters": {k: v for k, v in best.hyperparameters.values.items()},
            "metrics": metrics,
            "objective": (f"val_loss_ratio + {s.lambda_add:g} * (enc_add + dec_add) + "
                          f"{s.lambda_hom:g} * dec_hom"),
            "tuner_dir": tuner.project_dir,
        },
    )
