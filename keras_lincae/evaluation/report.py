"""The evaluation's results document (``runner.make_results``) written as ``results.json``,
``results.md`` and ``results.csv``, and the table rows and verdict the demo page shows."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from keras_lincae.evaluation.metrics import MAG_SNR_FFT_SIZE, MAG_SNR_HOP
from keras_lincae.evaluation.registry import ARROWS, gain_name

RESULTS_FORMAT = "keras_lincae.evaluation/1"


MIN_SONGS_FOR_CI = 5  # fewer songs: a t-interval is wider than the effects it would qualify
HEADLINE_METRICS = {
    "recon_mag_snr": "magnitude-spectrogram SNR of the 1-step reconstruction (STFT "
                     f"{MAG_SNR_FFT_SIZE}/{MAG_SNR_HOP}): phase-blind, the main reconstruction figure",
    "recon_mrstft": "multi-resolution STFT distance of the reconstruction (official auraloss settings)",
    "recon_si_sdr": "waveform SI-SDR; a consistency decoder invents phase, so it stays low even when "
                    "the reconstruction sounds right",
    "recon_mag_snr_best_gain": "magnitude SNR after the least-squares gain: the spectrogram's shape only; "
                               "far above Rec. mag-SNR when the decode is too quiet or too loud",
    "recon_level": "RMS level of the reconstruction relative to the input (0 dB: as loud)",
    "dec_homog_mean": "decoder homogeneity: SNR of Dec(a z) against a Dec(z), mean over gains a",
    "enc_add": "encoder additivity: relative error of Enc(u + v) against Enc(u) + Enc(v)",
    "dec_add_mrstft": "decoder additivity: MR-STFT of Dec(Enc(u) + Enc(v)) against u + v",
    "sep_mrstft": "separation by subtraction: MR-STFT of Dec(z_mix - z_accompaniment) against the target",
}


def _fmt(stat, digits=3):
    if stat is None or stat.get("mean") is None:
        return "n/a"
    mean = f"{stat['mean']:.{digits}f}"
    if stat.get("ci95") is None or stat.get("n", 0) < MIN_SONGS_FOR_CI:
        return mean
    return f"{mean} ± {stat['ci95']:.{digits}f}"


def table_rows(results, names=None):
    """``(header, rows)`` of the results table (strings): model, songs, one column per metric."""
    metrics = [m for m in results["metrics"] if names is None or m["name"] in names]
    header = ["Model", "Songs"] + [m["label"] + ARROWS[m["higher_is_better"]] for m in metrics]
    rows = []
    for r in results["models"]:
        n = max((s["n"] for k, s in r["summary"].items() if k != "silence_norm"), default=0)
        rows.append([r["name"], str(n)] + [_fmt(r["summary"].get(m["name"])) for m in metrics])
    return header, rows


def verdict(results):
    """One line: which model is best on each headline metric (None with fewer than two models)."""
    models = results["models"]
    if len(models) < 2:
        return None
    wins = {r["name"]: [] for r in models}
    for m in results["metrics"]:
        if m["name"] not in HEADLINE_METRICS or m["higher_is_better"] is None:
            continue
        scored = [(r["summary"].get(m["name"], {}).get("mean"), r["name"]) for r in models]
        scored = [(v, name) for v, name in scored if v is not None]
        if scored:
            best = max(scored) if m["higher_is_better"] else min(scored)
            wins[best[1]].append(m["label"])
    total = sum(len(w) for w in wins.values())
    parts = [f"{name} is best on {len(w)} of {total} ({', '.join(w)})" for name, w in wins.items() if w]
    return "Verdict: " + "; ".join(parts) + "."


def markdown_table(header, rows):
    """A Markdown table (list of lines): text header, right-aligned value columns."""
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    return lines + ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]


def describe_chunking(rows):
    """How the models of ``rows`` encoded and decoded their clips: "decoded in crossfaded 0.4-s
    chunks", "decoded whole", or one such phrase per model."""
    spans = [r.get("chunk_seconds") for r in rows]
    text = lambda s: "decoded whole" if s is None else f"decoded in crossfaded {s:g}-s chunks"
    if len(set(spans)) == 1:
        return text(spans[0])
    return "; ".join(f"{r['name']}: {text(s)}" for r, s in zip(rows, spans))


def format_markdown(results):
    """``results.md``: headline table, verdict and legend, then every metric, settings and skips."""
    cfg = results["config"]
    lines = ["# Lin-CAE evaluation", ""]
    lines.append(
        f"Data: `{cfg.get('data')}`, target `{cfg.get('target')}`, "
        f"{len(results['songs'])} song(s), clips of up to {cfg.get('clip_seconds')} s "
        f"(start: {cfg.get('clip_start')}), {cfg.get('steps')} decoding step(s), seed "
        f"{cfg.get('seed')}, backend {cfg.get('keras_backend')}"
        + (", latent arithmetic relative to Enc(silence) (affine)" if cfg.get("affine") else "")
        + ", " + describe_chunking(results["models"])
        + ". Values are means over songs, "
        f"with a 95 % confidence interval (±) from {MIN_SONGS_FOR_CI} songs on; "
        "↑ higher is better, ↓ lower is better.")
    trained = [r["training"] for r in results["models"] if r.get("training")]
    if trained:
        lines += ["", "Models: " + "; ".join(trained) + "."]
    lines.append("")
    headline = [m for m in HEADLINE_METRICS if any(x["name"] == m for x in results["metrics"])]
    lines += markdown_table(*table_rows(results, headline))
    line = verdict(results)
    if line:
        lines += ["", line]
    lines += ["", "What the columns mean:", ""]
    labels = {m["name"]: m["label"] for m in results["metrics"]}
    lines += [f"- **{labels[name]}**: {HEADLINE_METRICS[name]}." for name in headline]
    lines += ["", "## Every metric", ""]
    lines += markdown_table(*table_rows(results))
    lines.append("")
    lines.append("Homogeneity gains a: " + ", ".join(gain_name(g) for g in cfg["gains"])
                 + ". Encoder homogeneity and additivity are relative L2 errors of latents; "
                 "decoder homogeneity is the SNR of Dec(a z) against a Dec(z); additivity uses "
                 "u = target, v = accompaniment; separation decodes z_mix - z_accompaniment.")
    if results["skipped"]:
        lines += ["", "Skipped songs:", ""]
        lines += [f"- {s['song']}: {s['reason']}" for s in results["skipped"]]
    notes = [n for r in results["models"] for n in r.get("notes", [])]
    if notes:
        lines += ["", "Notes:", ""] + [f"- {n}" for n in sorted(set(notes))]
    return "\n".join(lines) + "\n"


def csv_table(header, rows):
    """A CSV text (``\n`` line ends) of ``header`` and ``rows``."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerows([header, *rows])
    return buf.getvalue()


def format_csv(results):
    """``results.csv``: one row per model; per metric ``<name>_mean``, ``_ci95`` and ``_n``."""
    names = [m["name"] for m in results["metrics"]]
    header = ["model", "preset"] + [f"{n}_{s}" for n in names for s in ("mean", "ci95", "n")]
    rows = []
    for r in results["models"]:
        row = [r["name"], r.get("preset") or ""]
        for n in names:
            st = r["summary"].get(n, {})
            row += ["" if st.get("mean") is None else repr(st["mean"]),
                    "" if st.get("ci95") is None else repr(st["ci95"]), st.get("n", 0)]
        rows.append(row)
    return csv_table(header, rows)


def write_results(results, out_dir):
    """Write ``results.md``, ``results.csv`` and ``results.json`` into ``out_dir``; return paths."""
    out_dir = Path(out_dir).expanduser()
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"md": out_dir / "results.md", "csv": out_dir / "results.csv",
             "json": out_dir / "results.json"}
    paths["md"].write_text(format_markdown(results), encoding="utf-8")
    paths["csv"].write_text(format_csv(results), encoding="utf-8")
    paths["json"].write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n",
                             encoding="utf-8")
    return paths


def load_results(path):
    """Read a ``results.json`` (or the folder holding it)."""
    path = Path(path).expanduser()
    if path.is_dir():
        path = path / "results.json"
    results = json.loads(path.read_text(encoding="utf-8"))
    if results.get("format") != RESULTS_FORMAT:
        raise ValueError(f"{path} is not a {RESULTS_FORMAT} results file")
    return results
