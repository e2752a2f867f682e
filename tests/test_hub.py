"""Presets from the Hugging Face Hub with the real `huggingface_hub` client, against a local Hub.

`keras_lincae.testing.hub_server.HubServer` serves folders under the Hub's URL scheme on
127.0.0.1; each load runs in a fresh process with `HF_ENDPOINT` pointing there (the client reads
its settings when imported) and its own `HF_HOME` and `KERAS_LINCAE_CACHE`.

The official release is served at full size (the 58 M parameter `lin_cae` architecture with
random weights from the official package, 233 MB, in the real file names) so the download,
conversion and cache run as for the real release; the audio is 0.5 s to keep the encode cheap.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from keras_lincae import LinCAE
from keras_lincae import presets
from keras_lincae.models.official_checkpoint import RELEASE_FILES
from keras_lincae.testing import official_oracle as oracle
from keras_lincae.testing.official_oracle import PARITY_MAX_RELATIVE_ERROR, max_relative_error
from keras_lincae.testing.helpers import music_like, randomize_weights, to_numpy
from keras_lincae.testing.hub_server import HubServer

OFFICIAL_FOLDER = presets.BUILTIN_PRESETS["lin_cae"]["official_folder"]
WEIGHTS = f"{OFFICIAL_FOLDER}/{RELEASE_FILES['weights']}"

# Loads each source given on the command line (a fresh process reads HF_* as a user's would);
# prints `ok SOURCE` or `error SOURCE "TYPE: MESSAGE"` (JSON), saves latents (and a one-step decode).
_LOAD = """
import json
import sys
import numpy as np
from keras_lincae import LinCAE
from keras_lincae.testing.helpers import to_numpy
inputs, out = np.load(sys.argv[1]), {}
for i, source in enumerate(sys.argv[3:]):
    try:
        model = LinCAE.from_preset(source)
    except Exception as error:
        print("error", source, json.dumps(f"{type(error).__name__}: {error}"), flush=True)
        continue
    out[f"latents{i}"] = to_numpy(model.encode(inputs["audio"]))
    if "noise" in inputs:
        out[f"decoded{i}"] = to_numpy(model.decode(out[f"latents{i}"], noise=inputs["noise"]))
    out[f"scale{i}"] = model.scale_factor
    print("ok", source, flush=True)
np.savez(sys.argv[2], **out)
"""


def _load(tmp_path, hub_url, sources, audio, noise=None, offline=False):
    """Run `_LOAD` on `sources` -> `(outcomes {source: "ok" or the error}, saved arrays)`; every
    error must be one line."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))}
    env.update(HF_HOME=str(tmp_path / "hf"), KERAS_LINCAE_CACHE=str(tmp_path / "cache"),
               HF_ENDPOINT=hub_url, HF_HUB_OFFLINE="1" if offline else "0",
               HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_PROGRESS_BARS="1")
    tmp_path.mkdir(parents=True, exist_ok=True)
    inputs, out = tmp_path / "inputs.npz", tmp_path / "out.npz"
    np.savez(inputs, audio=audio, **({} if noise is None else {"noise": noise}))
    run = subprocess.run([sys.executable, "-c", _LOAD, str(inputs), str(out), *sources], env=env,
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    outcomes = {}
    for line in run.stdout.splitlines():
        status, source, *message = line.split(" ", 2)
        if status in ("ok", "error") and source in sources:
            outcomes[source] = "ok" if status == "ok" else json.loads(message[0])
            assert "\n" not in outcomes[source], outcomes[source]
    assert sorted(outcomes) == sorted(sources), run.stdout + run.stderr[-3000:]
    return outcomes, dict(np.load(out))


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    """The official model at full size with random weights, and a repo folder holding its release."""
    model = oracle.build_official(oracle.LIN_CAE_GENERATOR, seed=0)
    repo = tmp_path_factory.mktemp("official_repo")
    oracle.write_release(model, str(repo / OFFICIAL_FOLDER), oracle.LIN_CAE_GENERATOR)
    (repo / "README.md").write_text("Lin-CAE releases (test copy)\n")  # outside the folder: never fetched
    return model, repo


def _converted_files(tmp_path):
    """Everything in the converted-preset cache (the preset and any work folders)."""
    folder = tmp_path / "cache" / "presets"
    return sorted(os.listdir(folder)) if folder.is_dir() else []


def test_official_preset_downloads_converts_once_and_loads_offline(official, tmp_path):
    """`from_preset("lin_cae")`: offline with nothing cached, an interrupted download and a corrupt
    file each fail with one clear line and leave nothing converted; the next run downloads,
    converts once and matches the official model; later runs load offline from the cache."""
    model, repo = official
    audio = music_like(22050, seed=5)
    expected = oracle.official_encode(model, audio)
    noise = np.random.default_rng(4).standard_normal((1, expected.shape[1] * 8, 1024, 2)).astype("float32")
    reference = oracle.official_decode_1step(model, expected, noise)
    with HubServer({presets.OFFICIAL_HF_REPO: str(repo)}) as hub:
        outcome, _ = _load(tmp_path, hub.url, ["lin_cae"], audio, offline=True)
        assert "could not be fetched" in outcome["lin_cae"] and "convert_checkpoint.py" in outcome["lin_cae"]
        assert not hub.requests

        size = os.path.getsize(repo / WEIGHTS)
        hub.cut_at[WEIGHTS] = size // 2  # every response ends there: the client's resumes fail too
        outcome, _ = _load(tmp_path, hub.url, ["lin_cae"], audio)
        assert outcome["lin_cae"].startswith("RuntimeError: The weights of built-in preset 'lin_cae'")
        assert "RemoteProtocolError" in outcome["lin_cae"]
        resumed = [r for _, path, r in hub.requests if path.endswith(WEIGHTS) and r]
        assert resumed and all(r.startswith("bytes=") for r in resumed)  # the client resumed, in vain
        assert _converted_files(tmp_path) == []
        del hub.cut_at[WEIGHTS]

        hub.corrupt.add(WEIGHTS)
        outcome, _ = _load(tmp_path, hub.url, ["lin_cae"], audio)
        assert "does not match the Hub's checksum" in outcome["lin_cae"] and "run again" in outcome["lin_cae"]
        assert _converted_files(tmp_path) == []
        hub.corrupt.clear()

        before = len(hub.file_requests())
        outcome, first = _load(tmp_path, hub.url, ["lin_cae"], audio, noise)
        assert outcome == {"lin_cae": "ok"}, outcome
        # Only the removed file is fetched again; the others come from the Hugging Face cache.
        assert hub.file_requests()[before:] == [f"{presets.OFFICIAL_HF_REPO}/{WEIGHTS}"]
        assert not any("README" in path for _, path, _ in hub.requests)  # outside the folder
    assert first["scale0"] == 33.0
    assert max_relative_error(first["latents0"], expected) <= PARITY_MAX_RELATIVE_ERROR
    assert max_relative_error(first["decoded0"], reference) <= PARITY_MAX_RELATIVE_ERROR
    assert _converted_files(tmp_path) == ["lin_cae"]  # no staging or lock left

    outcome, again = _load(tmp_path, hub.url, ["lin_cae"], audio, offline=True)  # the hub is gone
    assert outcome == {"lin_cae": "ok"}, outcome
    np.testing.assert_array_equal(again["latents0"], first["latents0"])


@pytest.fixture(scope="module")
def tiny_repos(tmp_path_factory):
    """A tiny preset saved in a repo's sub-folder and at another repo's root."""
    model = randomize_weights(LinCAE.from_preset("lin_cae_tiny", load_weights=False), seed=3)
    root = tmp_path_factory.mktemp("repos")
    model.save_to_preset(str(root / "models" / "sub" / "preset"))
    model.save_to_preset(str(root / "models" / "other"))
    model.save_to_preset(str(root / "root"))
    return model, {"me/models": str(root / "models"), "me/root": str(root / "root")}


def test_hf_presets_download_check_and_load_offline(tiny_repos, tmp_path):
    model, repos = tiny_repos
    audio = music_like(9000, seed=4)
    expected = to_numpy(model.encode(audio))
    sources = ["hf://me/models/sub/preset", "hf://me/root", "hf://me/missing"]
    with HubServer(repos) as hub:
        outcome, loaded = _load(tmp_path, hub.url, sources, audio)
        assert not any("/other/" in path for path in hub.file_requests())  # only the sub-folder is fetched
        hub.corrupt.add("model.weights.h5")
        outcome_corrupt, _ = _load(tmp_path / "second", hub.url, ["hf://me/root"], audio)
    assert outcome["hf://me/models/sub/preset"] == outcome["hf://me/root"] == "ok"
    np.testing.assert_array_equal(loaded["latents0"], expected)
    np.testing.assert_array_equal(loaded["latents1"], expected)
    missing = outcome["hf://me/missing"]
    assert missing.startswith("DownloadError: Could not download hf://me/missing from the Hugging Face Hub")
    assert "RepositoryNotFoundError" in missing
    wrong = outcome_corrupt["hf://me/root"]
    assert "model.weights.h5 of hf://me/root does not match the Hub's checksum" in wrong
    assert not list((tmp_path / "second" / "hf").rglob("model.weights.h5"))  # removed from the cache

    outcome, offline = _load(tmp_path, hub.url, sources[:2], audio, offline=True)
    assert outcome == {s: "ok" for s in sources[:2]}
    np.testing.assert_array_equal(offline["latents0"], expected)


@pytest.mark.parametrize("source", ["hf://justowner", "hf://owner/", "hf:///repo"])
def test_malformed_hf_source(source):
    with pytest.raises(ValueError, match="hf://owner/repo"):
        LinCAE.from_preset(source)
