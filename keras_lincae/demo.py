"""A static listening page for Lin-CAE models, in the spirit of the paper's demo page.

``build_demo_page`` renders, for a few song excerpts and each compared model, audio players with
a spectrogram image beside each one:

* the original mix and its reconstruction ``Dec(Enc(mix))``;
* the true mix and the decoded sum of the stems' latents ``Dec(sum_k Enc(stem_k))``;
* the true target stem and the target separated by latent subtraction ``Dec(z_mix - z_acc)``;
* the mix scaled by ``a`` and ``Dec(a z_mix)`` for several gains ``a``;

with the results table (``keras_lincae.evaluation``) on top. The page needs no network: media
files are written next to ``index.html`` under relative paths (``media/``), or embedded as
``data:`` URIs with ``embed=True`` (one self-contained file). Audio is Ogg Vorbis by default
(``audio_format="wav"`` for 16-bit PCM). Spectrograms are PNG files written
with NumPy and zlib only. An inline script reports, in ``<pre id="load-status">``, whether every
player and image loaded (the page test reads it in headless Chromium).
"""

from __future__ import annotations

import base64
import html
import io
import re
import struct
import zlib
from pathlib import Path
from typing import Sequence

import numpy as np
import soundfile as sf

from keras_lincae.data.audio_io import SAMPLE_RATE
from keras_lincae.data.songs import clip_batches
from keras_lincae.evaluation.checks import decode_to
from keras_lincae.evaluation.registry import gain_name
from keras_lincae.evaluation.report import MIN_SONGS_FOR_CI, describe_chunking, table_rows, verdict

__all__ = [
    "DEMO_GAINS",
    "encode_png",
    "spectrogram_image",
    "AUDIO_FORMATS",
    "audio_bytes",
    "render_songs",
    "build_demo_page",
]

DEMO_GAINS = (0.25, 0.5, 2.0)
SPEC_WIDTH, SPEC_HEIGHT = 176, 80
SPEC_TOP_DB, SPEC_RANGE_DB = 40.0, 80.0  # fixed scale: quieter audio looks darker
_MAGMA = np.array([  # anchors of a magma-like colour map, dark to bright
    (0, 0, 4), (40, 11, 84), (101, 21, 110), (159, 42, 99), (212, 72, 66), (245, 125, 21),
    (250, 193, 39), (252, 253, 191)], np.float64)


# ----------------------------------------------------------------------------------------------
# Media encoders (no dependencies beyond NumPy, zlib and soundfile)
# ----------------------------------------------------------------------------------------------


def encode_png(rgb) -> bytes:
    """An 8-bit RGB image ``(height, width, 3)`` (uint8) as PNG bytes."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.shape[0] < 1 or rgb.shape[1] < 1:
        raise ValueError(f"expected an RGB image (height, width, 3), got shape {rgb.shape}")
    h, w, _ = rgb.shape
    raw = np.concatenate([np.zeros((h, 1), np.uint8), rgb.reshape(h, w * 3)], axis=1).tobytes()

    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    return (b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 9))
            + chunk(b"IEND", b""))


def spectrogram_image(audio, sample_rate=SAMPLE_RATE, width=SPEC_WIDTH, height=SPEC_HEIGHT,
                      n_fft=1024, hop=256, fmin=40.0, top_db=SPEC_TOP_DB, range_db=SPEC_RANGE_DB):
    """A log-frequency power spectrogram of mono ``audio`` as an RGB uint8 image.

    Time runs left to right over ``width`` columns, frequency bottom to top (``fmin`` to
    Nyquist, log-spaced rows). Levels use a fixed dB scale (``top_db`` bright, ``top_db -
    range_db`` black), so scaled audio looks brighter or darker.
    """
    x = np.asarray(audio, np.float64).reshape(-1)
    if x.size < n_fft:
        x = np.pad(x, (0, n_fft - x.size))
    window = np.hanning(n_fft + 1)[:-1]
    padded = np.pad(x, n_fft // 2)
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop]
    power = np.abs(np.fft.rfft(frames * window, axis=-1)) ** 2  # (frames, bins)
    # Columns: mean power over equal runs of frames.
    edges = np.linspace(0, power.shape[0], width + 1).astype(int)
    edges = np.minimum(edges, power.shape[0] - 1)
    cols = np.stack([power[a : max(b, a + 1)].mean(axis=0) for a, b in zip(edges[:-1], edges[1:])])
    # Rows: max power over log-spaced frequency bands.
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    band = np.geomspace(fmin, sample_rate / 2, height + 1)
    lo = np.clip(np.searchsorted(freqs, band[:-1]), 0, len(freqs) - 1)
    hi = np.clip(np.searchsorted(freqs, band[1:]), 0, len(freqs) - 1)
    rows = np.stack([cols[:, a : max(b, a + 1)].max(axis=1) for a, b in zip(lo, hi)], axis=0)
    level = (10.0 * np.log10(rows + 1e-12) - (top_db - range_db)) / range_db
    level = np.clip(level[::-1], 0.0, 1.0)  # (height, width), low frequencies at the bottom
    pos = level * (len(_MAGMA) - 1)
    i0 = np.minimum(pos.astype(int), len(_MAGMA) - 2)
    frac = (pos - i0)[..., None]
    rgb = _MAGMA[i0] * (1.0 - frac) + _MAGMA[i0 + 1] * frac
    return np.round(rgb).astype(np.uint8)


# name: (soundfile format, subtype, MIME type, file extension)
AUDIO_FORMATS = {
    "ogg": ("OGG", "VORBIS", "audio/ogg", "ogg"),  # ~10x smaller; browsers may show up to ~0.1 s more
    "wav": ("WAV", "PCM_16", "audio/wav", "wav"),  # lossless, plays everywhere
}


def _audio_format_spec(audio_format):
    """The `AUDIO_FORMATS` entry of `audio_format`, or a ValueError naming the choices."""
    if audio_format not in AUDIO_FORMATS:
        raise ValueError(f"unknown audio format {audio_format!r}; expected one of {sorted(AUDIO_FORMATS)}")
    return AUDIO_FORMATS[audio_format]


def audio_bytes(audio, sample_rate, audio_format="ogg") -> bytes:
    """Mono float audio `(samples,)` as Ogg Vorbis or 16-bit WAV bytes (clipped to [-1, 1])."""
    file_format, subtype = _audio_format_spec(audio_format)[:2]
    buf = io.BytesIO()
    x = np.clip(np.asarray(audio, np.float64).reshape(-1), -1.0, 1.0)
    sf.write(buf, x, int(sample_rate), format=file_format, subtype=subtype)
    return buf.getvalue()


# ----------------------------------------------------------------------------------------------
# Audio for one song
# ----------------------------------------------------------------------------------------------


def render_songs(fns, clips, gains: Sequence[float] = DEMO_GAINS):
    """The decoded audio shown for each clip, for one model.

    Clips of equal length are stacked exactly as ``keras_lincae.evaluation.evaluate_batch``
    stacks them, so with the same ``ModelFunctions`` (and its cache kept) the encodes and decodes
    the evaluation already made are reused.

    Args:
        fns: ``keras_lincae.evaluation.ModelFunctions`` (or any object with NumPy ``encode`` /
            ``decode``; ``prefetch_encode`` / ``prefetch_decode`` are used when present).
        clips: list of ``keras_lincae.evaluation.Clip``.
        gains: latent gains.

    Returns:
        one dict per clip of mono float64 arrays of the clip's length: ``reconstruction``
        (``Dec(z_mix)``), ``stem_sum`` (``Dec(sum_k z_stem_k)``), ``separated``
        (``Dec(z_mix - z_acc)``) and ``gain_<a>`` (``Dec(a z_mix)``) per gain.
    """
    out = [None] * len(clips)
    for idx in clip_batches(clips, max(1, len(clips))):
        batch = [clips[i] for i in idx]
        n = batch[0].num_samples
        x = np.asarray(np.stack([c.mixture for c in batch]), np.float64)
        v = np.asarray(np.stack([c.accompaniment for c in batch]), np.float64)
        stems = np.asarray(np.concatenate([np.stack(list(c.stems.values())) for c in batch]),
                           np.float64)
        if hasattr(fns, "prefetch_encode"):
            fns.prefetch_encode([x, v, stems])
        z, z_v = np.asarray(fns.encode(x)), np.asarray(fns.encode(v))
        z_stems = np.asarray(fns.encode(stems))
        bounds = np.cumsum([len(c.stems) for c in batch])[:-1]
        z_sum = np.stack([part.sum(axis=0) for part in np.split(z_stems, bounds)])
        latents = {"reconstruction": z, "stem_sum": z_sum, "separated": z - z_v}
        for g in gains:
            latents[f"gain_{gain_name(g)}"] = float(g) * z
        if hasattr(fns, "prefetch_decode"):
            fns.prefetch_decode(list(latents.values()))
        decoded = {key: decode_to(fns.decode, lat, n, f"decode({key} latents)")
                   for key, lat in latents.items()}
        for j, i in enumerate(idx):
            out[i] = {key: y[j] for key, y in decoded.items()}
    return out


# ----------------------------------------------------------------------------------------------
# HTML
# ----------------------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px;color:#222;
 max-width:1800px}
h1{font-size:1.6em;margin-bottom:.2em} h2{margin-top:1.4em} h3{margin:1.2em 0 .4em}
p.lead{color:#444;max-width:70em}
table.results{border-collapse:collapse;font-size:12px;margin:8px 0}
table.results th,table.results td{border:1px solid #ccc;padding:3px 6px;white-space:nowrap}
table.results th{background:#f3f3f3} table.results td{text-align:right}
table.results td:first-child{text-align:left;font-weight:600}
.scroll{overflow-x:auto}
table.demo{border-collapse:collapse}
table.demo th,table.demo td{border:1px solid #ddd;padding:4px;vertical-align:top}
table.demo thead th{background:#f3f3f3;font-size:13px}
table.demo tbody th{text-align:left;font-size:13px;background:#fafafa;min-width:7em;
 max-width:10em;overflow-wrap:anywhere}
figure{margin:0;display:flex;flex-direction:column;align-items:center;gap:2px}
figure img{display:block;border:1px solid #999;image-rendering:auto}
figure audio{width:176px;height:32px}
figcaption{font-size:11px;color:#555;text-align:center;max-width:176px}
.note{font-size:12px;color:#555}
#load-status-line{font-size:12px;color:#555;margin-top:2em}
pre#load-status{display:none}
"""

_STATUS_JS = """
(function () {
  var audios = Array.prototype.slice.call(document.querySelectorAll('audio'));
  var images = Array.prototype.slice.call(document.images);
  function short(u) { return u.indexOf('data:') === 0 ? u.slice(0, 30) : u; }
  function audioDone(a) {
    return new Promise(function (resolve) {
      if (a.error || a.readyState >= 1) { resolve(); return; }
      a.addEventListener('loadedmetadata', function () { resolve(); });
      a.addEventListener('error', function () { resolve(); });
      try { a.load(); } catch (e) { resolve(); }
    });
  }
  function imageDone(im) {
    return new Promise(function (resolve) {
      if (im.complete) { resolve(); return; }
      im.addEventListener('load', function () { resolve(); });
      im.addEventListener('error', function () { resolve(); });
    });
  }
  function report() {
    var status = {
      done: true,
      audio: audios.map(function (a) {
        return {src: short(a.currentSrc || a.getAttribute('src') || ''),
                error: a.error ? a.error.code : null, duration: a.duration,
                expected: parseFloat(a.getAttribute('data-duration')),
                readyState: a.readyState};
      }),
      images: images.map(function (im) {
        return {src: short(im.currentSrc || im.getAttribute('src') || ''),
                complete: im.complete, naturalWidth: im.naturalWidth};
      }),
      resources: (performance.getEntriesByType ?
                  performance.getEntriesByType('resource') : []).map(function (e) {
        return short(e.name); })
    };
    document.getElementById('load-status').textContent = JSON.stringify(status);
    var okAudio = status.audio.filter(function (a) { return a.error === null && a.duration > 0; });
    var okImg = status.images.filter(function (i) { return i.naturalWidth > 0; });
    document.getElementById('load-status-line').textContent =
      'Page check: ' + okAudio.length + '/' + audios.length + ' players and ' + okImg.length +
      '/' + images.length + ' spectrograms loaded.';
    document.title = document.title.replace(/ \\[.*\\]$/, '') + ' [loaded]';
  }
  Promise.all(audios.map(audioDone).concat(images.map(imageDone))).then(report);
})();
"""


def _slug(text):
    return re.sub(r"[^A-Za-z0-9_-]+", "-", str(text)).strip("-") or "x"


class _Media:
    """Writes media next to the page (relative ``media/`` paths) or embeds ``data:`` URIs."""

    def __init__(self, out_dir, embed, audio_format):
        self.embed = embed
        self.audio_format = audio_format
        self.dir = Path(out_dir) / "media"
        self.names = set()
        self.total_bytes = 0
        if not embed:
            self.dir.mkdir(parents=True, exist_ok=True)

    def add(self, name, data, mime, ext):
        self.total_bytes += len(data)
        if self.embed:
            return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")
        stem, i = _slug(name), 1
        filename = f"{stem}.{ext}"
        while filename in self.names:
            i += 1
            filename = f"{stem}-{i}.{ext}"
        self.names.add(filename)
        (self.dir / filename).write_bytes(data)
        return f"media/{filename}"


def _add_media(media, name, audio, sample_rate):
    """Write (or embed) one clip's spectrogram and audio: ``(img_src, audio_src, seconds)``."""
    img = media.add(name, encode_png(spectrogram_image(audio, sample_rate)), "image/png", "png")
    mime, ext = AUDIO_FORMATS[media.audio_format][2:]
    sound = media.add(name, audio_bytes(audio, sample_rate, media.audio_format), mime, ext)
    return img, sound, len(audio) / sample_rate


def _figure(srcs, caption):
    img, sound, seconds = srcs
    e = html.escape
    return (f'<figure><img src="{e(img)}" width="{SPEC_WIDTH}" height="{SPEC_HEIGHT}" '
            f'alt="spectrogram: {e(caption)}">'
            f'<audio controls preload="metadata" src="{e(sound)}" data-duration="{seconds:.6f}">'
            f'</audio><figcaption>{e(caption)}</figcaption></figure>')


def results_table_html(results):
    """The results of ``keras_lincae.evaluation`` as an HTML table: one row per metric, one
    column per model (the transpose of ``results.md``, which fits a page better)."""
    header, rows = table_rows(results)
    e = html.escape
    out = ['<div class="scroll"><table class="results"><thead><tr><th>Metric</th>']
    out += [f"<th>{e(r[0])}</th>" for r in rows]
    out.append("</tr></thead><tbody>")
    for i, label in enumerate(header[1:], start=1):
        out.append(f"<tr><td>{e(label)}</td>" + "".join(f"<td>{e(r[i])}</td>" for r in rows)
                   + "</tr>")
    out.append("</tbody></table></div>")
    return "".join(out)


def build_demo_page(models, clips, out_dir, results=None, gains: Sequence[float] = DEMO_GAINS,
                    target="vocals", embed=False, title="Lin-CAE listening examples",
                    progress=None, audio_format="ogg", about=None):
    """Write ``out_dir/index.html`` (and ``out_dir/media/`` unless ``embed``).

    Args:
        models: list of ``(name, fns)``; ``fns`` as in ``render_songs``.
        clips: list of ``keras_lincae.evaluation.Clip`` (the excerpts to show).
        out_dir: output folder (created).
        results: a results document of ``keras_lincae.evaluation`` for the table on top, or None.
        gains: latent gains shown.
        target: the target stem's name (captions only).
        embed: bool, False. Embed media as ``data:`` URIs in one HTML file.
        audio_format: "ogg" (Ogg Vorbis, default: a page ~10x smaller) or "wav" (16-bit PCM).
        progress: optional callable ``(info)`` called after each model's audio is decoded.
        about: optional one line saying what the models are (e.g. their training budget).

    Returns:
        the path of ``index.html``.
    """
    out_dir = Path(out_dir).expanduser()
    out_dir.mkdir(parents=True, exist_ok=True)
    _audio_format_spec(audio_format)  # fail before any audio is rendered
    media = _Media(out_dir, embed, audio_format)
    e = html.escape
    gains = [float(g) for g in gains]
    columns = ["Reconstruction", "Sum of the stems' latents", f"Separation: {target}"]
    columns += [f"Latent gain a = {gain_name(g)}" for g in gains]
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<link rel="icon" href="data:,">',
        f"<title>{e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{e(title)}</h1>",
        '<p class="lead">Lin-CAE is a consistency autoencoder whose latent space is '
        "approximately linear: decoding the sum of latents gives the mix, subtracting the "
        "accompaniment's latent from the mix's latent leaves the target, and scaling a latent "
        "scales the audio. Each cell shows a spectrogram (log frequency, fixed level scale) above "
        "its player. The first row of each song holds the references; each further row is one "
        "model, decoded with a fixed seed.</p>",
    ]
    if about:
        parts.append(f'<p class="note">{e(about)}</p>')
    if results is not None:
        cfg = results.get("config", {})
        parts.append("<h2>Results</h2>")
        parts.append(results_table_html(results))
        if verdict(results):
            parts.append(f'<p class="note">{e(verdict(results))}</p>')
        parts.append(
            f'<p class="note">Means over {len(results.get("songs", []))} song(s) (± a 95 % confidence'
            f" interval from {MIN_SONGS_FOR_CI} songs on)"
            f" of {e(str(cfg.get('data', '')))} (target {e(str(cfg.get('target', '')))},"
            f" clips of up to {e(str(cfg.get('clip_seconds', '')))} s, {e(describe_chunking(results.get('models', [])))}, "
            f"{e(str(cfg.get('steps', '')))} step(s), seed {e(str(cfg.get('seed', '')))}); "
            "↑ higher is better, ↓ lower is better.</p>")
    parts.append("<h2>Listening examples</h2>")
    rendered = []
    for name, fns in models:
        rendered.append(render_songs(fns, clips, gains))
        if progress is not None:
            progress(name)
    for c, clip in enumerate(clips):
        sr = clip.sample_rate
        decoded = [(name, r[c]) for (name, _), r in zip(models, rendered)]
        mix = np.asarray(clip.mixture, np.float64)
        refs = [("mix", mix, "original mix"), ("mix", mix, "true mix"),
                ("target", np.asarray(clip.target, np.float64), f"true {target}")]
        refs += [(f"mix_x{gain_name(g)}", g * mix, f"{gain_name(g)} × mix") for g in gains]
        # One level scale per song, so that relative levels are kept and nothing clips.
        peak = max([np.max(np.abs(a)) for _, a, _ in refs]
                   + [np.max(np.abs(a)) for _, d in decoded for a in d.values()])
        scale = min(1.0, 0.99 / peak) if peak > 0 else 1.0
        seconds = clip.num_samples / sr
        parts.append(f"<h3>{e(clip.song)} <small>({clip.start_seconds:.1f} s to "
                     f"{clip.start_seconds + seconds:.1f} s"
                     + (f", levels × {scale:.2f}" if scale < 1.0 else "") + ")</small></h3>")
        parts.append('<div class="scroll"><table class="demo"><thead><tr><th></th>')
        parts += [f"<th>{e(c)}</th>" for c in columns]
        parts.append("</tr></thead><tbody><tr><th>Reference</th>")
        srcs = {}
        for key, audio, caption in refs:
            if key not in srcs:  # the true mix reuses the original's files
                srcs[key] = _add_media(media, f"{clip.song}_{key}", scale * audio, sr)
            parts.append(f"<td>{_figure(srcs[key], caption)}</td>")
        parts.append("</tr>")
        captions = {"reconstruction": "Dec(z_mix)", "stem_sum": "Dec(Σ z_stem)",
                    "separated": "Dec(z_mix − z_acc)"}
        for name, d in decoded:
            parts.append(f"<tr><th>{e(name)}</th>")
            for key, audio in d.items():
                caption = captions.get(key, f"Dec({key[5:]} · z_mix)")
                item = _add_media(media, f"{clip.song}_{name}_{key}", scale * audio, sr)
                parts.append(f"<td>{_figure(item, caption)}</td>")
            parts.append("</tr>")
        parts.append("</tbody></table></div>")
    parts.append('<p id="load-status-line">Page check: waiting for media…</p>')
    parts.append('<pre id="load-status"></pre>')
    parts.append(f"<script>{_STATUS_JS}</script></body></html>")
    index = out_dir / "index.html"
    index.write_text("\n".join(parts) + "\n", encoding="utf-8")
    return index


def page_summary(index_path):
    """Sizes of a built page: ``{"html_bytes", "media_files", "media_bytes"}``."""
    index_path = Path(index_path)
    folder = index_path.parent / "media"
    media = list(folder.glob("*")) if folder.is_dir() else []
    return {"html_bytes": index_path.stat().st_size, "media_files": len(media),
            "media_bytes": sum(p.stat().st_size for p in media)}
