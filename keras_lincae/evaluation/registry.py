"""The metric columns of the evaluation: names, table labels, groups and directions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from keras_lincae.evaluation.linearity import DEFAULT_GAINS

ARROWS = {True: " ↑", False: " ↓", None: ""}  # table suffix by higher_is_better


@dataclass(frozen=True)
class MetricSpec:
    """One table column: machine ``name``, table ``label``, ``group``, direction."""

    name: str
    label: str
    group: str
    higher_is_better: bool | None  # None: no preferred direction

    @property
    def arrow(self):
        return ARROWS[self.higher_is_better]


METRIC_GROUPS = (
    "reconstruction",
    "encoder_homogeneity",
    "decoder_homogeneity",
    "encoder_additivity",
    "decoder_additivity",
    "separation",
    "effective_rank",
    "silence_norm",
)


def gain_name(gain):
    """A gain as written in metric names and labels: ``0.25`` -> ``"0.25"``."""
    return f"{float(gain):g}"


def metric_specs(gains: Sequence[float] = DEFAULT_GAINS) -> list[MetricSpec]:
    """Every metric column of METHOD section 4, in table order."""
    specs = [
        MetricSpec("recon_mag_snr", "Rec. mag-SNR (dB)", "reconstruction", True),
        MetricSpec("recon_si_sdr", "Rec. SI-SDR (dB)", "reconstruction", True),
        MetricSpec("recon_snr", "Rec. SNR (dB)", "reconstruction", True),
        MetricSpec("recon_mrstft", "Rec. MR-STFT", "reconstruction", False),
        MetricSpec("recon_mag_snr_best_gain", "Rec. mag-SNR at best gain (dB)", "reconstruction", True),
        MetricSpec("recon_level", "Rec. level (dB)", "reconstruction", None),
    ]
    for g in gains:
        specs.append(MetricSpec(f"enc_homog_{gain_name(g)}", f"Enc. hom. a={gain_name(g)}",
                                "encoder_homogeneity", False))
    specs.append(MetricSpec("enc_homog_mean", "Enc. hom. mean", "encoder_homogeneity", False))
    for g in gains:
        specs.append(MetricSpec(f"dec_homog_{gain_name(g)}", f"Dec. hom. a={gain_name(g)} (dB)",
                                "decoder_homogeneity", True))
    specs.append(MetricSpec("dec_homog_mean", "Dec. hom. mean (dB)", "decoder_homogeneity", True))
    specs += [
        MetricSpec("enc_add", "Enc. add.", "encoder_additivity", False),
        MetricSpec("dec_add_mrstft", "Dec. add. MR-STFT", "decoder_additivity", False),
        MetricSpec("dec_add_si_sdr", "Dec. add. SI-SDR (dB)", "decoder_additivity", True),
        MetricSpec("sep_si_sdr", "Sep. SI-SDR (dB)", "separation", True),
        MetricSpec("sep_mrstft", "Sep. MR-STFT", "separation", False),
        MetricSpec("eff_rank", "Eff. rank", "effective_rank", None),
        MetricSpec("silence_norm", "Silence latent norm", "silence_norm", False),
    ]
    return specs


def resolve_metrics(selection=None, gains: Sequence[float] = DEFAULT_GAINS) -> list[MetricSpec]:
    """The metric columns named by ``selection`` (metric or group names or ``MetricSpec``s, a list
    or a comma-separated string; None or "all": all).

    Raises:
        ValueError: for an unknown name, listing every accepted name.
    """
    specs = metric_specs(gains)
    if selection is None:
        return specs
    if isinstance(selection, str):
        selection = [s for s in selection.replace(",", " ").split() if s]
    selection = [s.name if isinstance(s, MetricSpec) else s for s in selection]
    wanted = set()
    for item in selection:
        if item == "all":
            wanted.update(s.name for s in specs)
        elif item in METRIC_GROUPS:
            wanted.update(s.name for s in specs if s.group == item)
        elif any(s.name == item for s in specs):
            wanted.add(item)
        else:
            raise ValueError(
                f"unknown metric {item!r}; choose metric names "
                f"({', '.join(s.name for s in specs)}), group names "
                f"({', '.join(METRIC_GROUPS)}) or 'all'")
    if not wanted:
        raise ValueError("no metric selected")
    return [s for s in specs if s.name in wanted]
