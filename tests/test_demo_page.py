"""The listening page: built for a tiny preset, opened in headless Chromium from a local server.

Needs the Debian ``chromium`` package (``apt-get install -y --no-install-recommends chromium``);
``CHROMIUM=/path/to/chrome`` picks another binary.
"""

import functools
import html
import html.parser
import http.server
import json
import os
import re
import shutil
import subprocess
import threading
import zlib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from eval_helpers import MODELS, LinearStandIn, load_recipe, shared_tiny_setup
from keras_lincae import demo as D
from keras_lincae import evaluation as E

EXCERPT_SECONDS = 0.5
SONGS = 2


def _chromium():
    for candidate in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser",
                      "google-chrome"):
        if candidate and shutil.which(candidate):
            return shutil.which(candidate)
    pytest.fail("headless Chromium is needed: apt-get install -y --no-install-recommends "
                "chromium (or set CHROMIUM=/path/to/chrome)")


class _Server:
    """``http.server`` on 127.0.0.1 (a free port) in a thread, recording every request."""

    def __init__(self, folder):
        self.requests = []
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def log_message(self, fmt, *args):
                pass

            def log_request(self, code="-", size="-"):
                server.requests.append((self.command, self.path, int(code)))

        self.httpd = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(Handler, directory=os.fspath(folder)))
        self.port = self.httpd.server_address[1]
        self.base = f"http://127.0.0.1:{self.port}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


def _dump_status(dom_text):
    """The ``load-status`` JSON of a dumped DOM (as ``chromium --dump-dom`` prints it), or None."""
    m = re.search(r'<pre id="load-status"[^>]*>(.*?)</pre>', dom_text, re.S)
    if not m or not m.group(1).strip():
        return None
    return json.loads(html.unescape(m.group(1)))


def _open_in_chromium(url, tmp_path, screenshot=None):
    """Load ``url`` in headless Chromium that can reach nothing but 127.0.0.1; return the DOM."""
    args = [
        _chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--mute-audio", "--disable-extensions",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        "--virtual-time-budget=10000",
    ]
    if screenshot:
        args += [f"--screenshot={screenshot}", "--window-size=1280,2000"]
    else:
        args += ["--dump-dom"]
    proc = subprocess.run(args + [url], capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


class _Sources(html.parser.HTMLParser):
    """Every URL-valued attribute of the page."""

    def __init__(self):
        super().__init__()
        self.urls = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("src", "href", "poster", "srcset", "data", "action") and value:
                self.urls.append((tag, name, value))


def _check_loaded(status, n_audio, n_images, base=None, duration_tolerance=0.1):
    """`duration_tolerance`: seconds. Chromium reports the duration of libsndfile's Ogg Vorbis
    files 3-56 ms long (measured; decoding them returns exactly the clip's samples), WAV exactly."""
    assert status is not None and status["done"], "the page's load check did not finish"
    assert len(status["audio"]) == n_audio
    assert len(status["images"]) == n_images
    for a in status["audio"]:
        assert a["error"] is None, a
        assert a["readyState"] >= 1, a
        assert a["duration"] == pytest.approx(a["expected"], abs=duration_tolerance), a
        assert a["expected"] == pytest.approx(EXCERPT_SECONDS, abs=1e-6), a
    for im in status["images"]:
        assert im["complete"] and im["naturalWidth"] == D.SPEC_WIDTH, im
    for url in status["resources"]:
        assert url.startswith("data:") or (base and url.startswith(base)), url


@pytest.fixture(scope="module")
def built_page(tmp_path_factory):
    preset, data = shared_tiny_setup()
    out = tmp_path_factory.mktemp("demo") / "page"
    demo_page = load_recipe("demo_page")
    index = demo_page.main([
        "--preset", os.fspath(preset), "--data", os.fspath(data), "--songs", str(SONGS),
        "--excerpt-seconds", str(EXCERPT_SECONDS), "--call-batch-size", "16",
        "--out", os.fspath(out)], models=MODELS)
    return Path(index), data


def test_demo_page_loads_in_headless_chromium(built_page, tmp_path):
    index, _ = built_page
    text = index.read_text()
    # Layout: the results table on top, then per song one reference row and one row per model.
    assert text.index('class="results"') < text.index('class="demo"')
    for label in [s.label for s in E.metric_specs()]:
        assert label in text
    assert "clips of up to 0.5 s, decoded whole" in text  # a folder preset names no chunk length
    for caption in ("original mix", "true mix", "true vocals", "Dec(z_mix)", "Dec(Σ z_stem)",
                    "Dec(z_mix − z_acc)", "Dec(0.25 · z_mix)", "Dec(0.5 · z_mix)",
                    "Dec(2 · z_mix)", "2 × mix"):
        assert caption in text, caption
    per_song = 6 + 6  # references + one model
    n_players = SONGS * per_song
    assert text.count("<audio ") == n_players and text.count("<img ") == n_players

    # Every resource is relative (served by the local server) or inline.
    parser = _Sources()
    parser.feed(text)
    assert parser.urls
    for tag, attr, url in parser.urls:
        assert url.startswith(("media/", "data:")), (tag, attr, url)
        assert not re.match(r"^[a-z]+://|^//", url)
        if url.startswith("media/"):
            assert (index.parent / url).is_file(), url
    # Audio is Ogg Vorbis by default: the players point at .ogg files that decode to the excerpt.
    players = [url for tag, _, url in parser.urls if tag == "audio"]
    assert players and all(url.endswith(".ogg") for url in players)
    decoded, rate = sf.read(index.parent / players[0])
    assert rate == 44100 and len(decoded) == round(EXCERPT_SECONDS * rate)
    assert "http://" not in text and "https://" not in text

    with _Server(index.parent) as server:
        dom = _open_in_chromium(server.base + "index.html", tmp_path)
        requests = list(server.requests)
    status = _dump_status(dom)
    _check_loaded(status, n_players, n_players, base=server.base, duration_tolerance=0.1)
    assert "[loaded]" in dom and f"{n_players}/{n_players} players" in dom
    # The server saw only successful requests for the page and its media.
    assert requests and all(code in (200, 206, 304) for _, _, code in requests), requests
    assert {p for _, p, _ in requests} <= {"/index.html"} | {
        "/" + u for _, _, u in parser.urls if u.startswith("media/")}


def test_embedded_page_is_one_file(built_page, tmp_path):
    _, data = built_page
    clips, _ = E.load_clips(data, clip_seconds=EXCERPT_SECONDS, max_songs=1)
    index = D.build_demo_page([("linear", LinearStandIn())], clips, tmp_path / "page",
                              embed=True, audio_format="wav")
    assert [p.name for p in (tmp_path / "page").iterdir()] == ["index.html"]
    parser = _Sources()
    parser.feed(index.read_text())
    assert len(parser.urls) == 1 + 2 * 12  # the favicon, 12 images and 12 players
    assert all(url.startswith("data:") for _, _, url in parser.urls)
    assert all(url.startswith("data:audio/wav;base64,") for tag, _, url in parser.urls if tag == "audio")
    dom = _open_in_chromium(index.as_uri(), tmp_path)
    _check_loaded(_dump_status(dom), 12, 12)


def test_png_encoder_round_trip():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, size=(5, 7, 3), dtype=np.uint8)
    png = D.encode_png(rgb)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    # IHDR, then one IDAT whose rows are filter byte 0 + RGB.
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert (width, height) == (7, 5)
    idat = png.index(b"IDAT")
    length = int.from_bytes(png[idat - 4 : idat], "big")
    raw = np.frombuffer(zlib.decompress(png[idat + 4 : idat + 4 + length]), np.uint8)
    raw = raw.reshape(5, 1 + 7 * 3)
    assert np.all(raw[:, 0] == 0)
    np.testing.assert_array_equal(raw[:, 1:].reshape(5, 7, 3), rgb)
    with pytest.raises(ValueError):
        D.encode_png(np.zeros((4, 4)))


def test_spectrogram_levels_follow_gain():
    t = np.arange(44100) / 44100
    x = 0.5 * np.sin(2 * np.pi * 440 * t)
    loud, quiet = D.spectrogram_image(x), D.spectrogram_image(0.1 * x)
    assert loud.shape == (D.SPEC_HEIGHT, D.SPEC_WIDTH, 3) and loud.dtype == np.uint8
    assert loud.astype(int).sum() > quiet.astype(int).sum()
    # The 440 Hz row is the brightest, away from the top (high) and bottom (low) edges.
    row = int(np.argmax(loud.astype(int).sum(axis=(1, 2))))
    assert 0.2 * D.SPEC_HEIGHT < row < 0.8 * D.SPEC_HEIGHT


def test_audio_formats_round_trip_and_unknown_format_is_named():
    t = np.arange(4410) / 44100
    x = 0.5 * np.sin(2 * np.pi * 440 * t)
    for name in ("ogg", "wav"):
        decoded, rate = sf.read(D.io.BytesIO(D.audio_bytes(x, 44100, name)))
        assert rate == 44100 and len(decoded) == len(x)
        assert np.sqrt(np.mean((decoded - x) ** 2)) < 0.02, name  # lossy Vorbis stays close
    assert len(D.audio_bytes(x, 44100, "ogg")) < len(D.audio_bytes(x, 44100, "wav")) / 2
    with pytest.raises(ValueError, match="unknown audio format 'mp4'"):
        D.audio_bytes(x, 44100, "mp4")
