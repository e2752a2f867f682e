"""Downloads from the Hugging Face Hub (`hf://owner/repo[/folder]`), checked against the Hub's checksums.

Files go to the Hugging Face cache (`HF_HOME`, `HF_HUB_CACHE`); `HF_ENDPOINT` and
`HF_HUB_OFFLINE=1` work as for any `huggingface_hub` download.
"""

import hashlib
import os

from keras_lincae import presets


class DownloadError(ConnectionError):
    """A download from the Hub failed (no connection, interrupted transfer, wrong bytes)."""


def parse_hf_source(source):
    """`"hf://owner/repo[/folder]"` -> `(repo id, folder or "")`; ValueError for another form."""
    parts = source[len("hf://"):].strip("/").split("/")
    if not source.startswith("hf://") or len(parts) < 2 or not all(parts):
        raise ValueError(f"hf:// presets must look like hf://owner/repo[/subdir], got {source!r}")
    return "/".join(parts[:2]), "/".join(parts[2:])


def _one_line(error):
    """`Type: message` of `error` on one line."""
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _file_hashes(path):
    """`(git blob id, sha256)` of the file at `path`, the two checksums the Hub lists."""
    git, sha256 = hashlib.sha1(b"blob %d\0" % os.path.getsize(path)), hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            git.update(block)
            sha256.update(block)
    return git.hexdigest(), sha256.hexdigest()


def _remote_files(repo, folder, commit):
    """`{path: (expected hash, "sha256" or "git")}` of the files under `folder` at `commit`, from
    the Hub's tree listing; None when the Hub cannot be reached (the files came from the cache)."""
    from huggingface_hub import HfApi
    from huggingface_hub.hf_api import RepoFile

    try:
        entries = list(HfApi().list_repo_tree(repo, path_in_repo=folder or None, recursive=True, revision=commit))
    except Exception:  # offline, or the Hub went away after the download: nothing to compare with
        return None
    expected = {}
    for entry in entries:
        if isinstance(entry, RepoFile):
            lfs = getattr(entry, "lfs", None)
            expected[entry.path] = (lfs.sha256, "sha256") if lfs is not None else (entry.blob_id, "git")
    return expected


def _remove_cached(path):
    """Delete a downloaded file from the Hugging Face cache: its blob and the snapshot's link to it."""
    blob = os.path.realpath(path)
    for item in {blob, path}:
        if os.path.lexists(item):
            os.remove(item)


def _check_download(source, repo, folder, root):
    """Compare the files of a snapshot `root` with the Hub's checksums; a wrong file is removed
    from the cache (so that the next try downloads it again) and raises DownloadError."""
    expected = _remote_files(repo, folder, os.path.basename(os.path.normpath(root)))
    for path, (digest, kind) in sorted((expected or {}).items()):
        local = os.path.join(root, *path.split("/"))
        git, sha256 = _file_hashes(local)
        actual = sha256 if kind == "sha256" else git
        if actual != digest:
            _remove_cached(local)
            raise DownloadError(
                f"Downloaded {path} of {source} does not match the Hub's checksum ({kind} {actual}, "
                f"expected {digest}); it was removed from the Hugging Face cache: run again to download it anew")


def download(source):
    """Download `hf://owner/repo[/folder]` (or take it from the cache) -> the local folder.

    Raises ValueError for a malformed source, ImportError without `huggingface_hub`, and
    DownloadError (one line) when the files cannot be fetched or arrive corrupt.
    """
    repo, folder = parse_hf_source(source)
    try:
        import huggingface_hub
    except ImportError as error:
        raise ImportError(f"Loading {source} needs huggingface_hub: pip install huggingface_hub") from error
    try:
        root = huggingface_hub.snapshot_download(repo, allow_patterns=[f"{folder}/*"] if folder else None)
    except Exception as error:  # the client raises many types (httpx, OSError, its own errors)
        raise DownloadError(f"Could not download {source} from the Hugging Face Hub: {_one_line(error)}") from error
    _check_download(source, repo, folder, root)
    return os.path.join(root, *folder.split("/")) if folder else root


def download_official_release(name, converted_dir):
    """Download the official release folder of built-in preset `name` -> its local folder.

    RuntimeError (one line) when it cannot be fetched, saying how to convert a copy on disk
    into `converted_dir` instead.
    """
    folder = presets.BUILTIN_PRESETS[name]["official_folder"]
    try:
        return download(f"hf://{presets.OFFICIAL_HF_REPO}/{folder}")
    except (DownloadError, ImportError) as error:
        raise RuntimeError(
            f"The weights of built-in preset {name!r} are the official release ({presets.OFFICIAL_HF_REPO}, "
            f"folder {folder}) and could not be fetched ({' '.join(str(error).split())}). With that folder on disk, "
            f"convert it once with `python recipes/convert_checkpoint.py PATH/{folder} {converted_dir}` or load it "
            f"with LinCAE.from_preset('PATH/{folder}'); load_weights=False gives a randomly initialised model"
        ) from error
