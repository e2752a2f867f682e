"""A local Hugging Face Hub for tests: serves folders as model repos on http://127.0.0.1:<port>.

Point the real `huggingface_hub` client at it with `HF_ENDPOINT=server.url`. It answers what
`snapshot_download` / `hf_hub_download` request (the Hub's URL scheme, revision `main` only):

- `GET /api/models/{repo}/revision/{rev}`: repo info `{"id", "sha", "siblings"}`;
- `GET /api/models/{repo}/tree/{rev}[/{folder}]`: the file list (`path`, `size`, git `oid`, and
  `lfs` `{oid: sha256, size}` for binary files, as the Hub lists Git-LFS files);
- `HEAD`/`GET /{repo}/resolve/{rev}/{path}`: the file, with `X-Repo-Commit`, `ETag` (the git oid,
  or `X-Linked-Etag`/`X-Linked-Size` with the sha256 for LFS files), `Content-Length` and
  `Range` requests (the client resumes an interrupted download with one).

Errors carry the Hub's `X-Error-Code` (RepoNotFound, RevisionNotFound, EntryNotFound). Faults for
tests: `cut_at[path] = n` ends every response of `path` at byte `n` of the file (the connection
closes mid-file), `corrupt.add(path)` serves `path` with wrong bytes under the real file's headers.
"""

import hashlib
import http.server
import json
import os
import threading
import urllib.parse

LFS_SUFFIXES = (".pth", ".pt", ".h5", ".bin", ".safetensors", ".npz")  # the Hub's default LFS types
CHUNK = 1 << 20


def _file_hashes(path):
    """`(git object id, sha256)` of a file: SHA-1 of `blob <size>\\0<data>` (the Hub's `oid`), SHA-256."""
    git, sha256 = hashlib.sha1(b"blob %d\0" % os.path.getsize(path)), hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            git.update(block)
            sha256.update(block)
    return git.hexdigest(), sha256.hexdigest()


def _describe_repo(folder):
    """`(commit sha, {path: entry})` of every file under `folder`; entries as the tree API lists them."""
    files = {}
    for root, _, names in os.walk(folder):
        for name in names:
            full = os.path.join(root, name)
            path = os.path.relpath(full, folder).replace(os.sep, "/")
            oid, sha256 = _file_hashes(full)
            entry = dict(type="file", path=path, size=os.path.getsize(full), oid=oid, local=full)
            if path.endswith(LFS_SUFFIXES):
                entry["lfs"] = dict(oid=sha256, size=entry["size"], pointerSize=134)
            files[path] = entry
    listing = "\n".join(f"{p} {e['oid']}" for p, e in sorted(files.items()))
    return hashlib.sha1(listing.encode()).hexdigest(), files


class HubServer:
    """Serve `repos` (`{"owner/name": folder}`) like the Hub; `url` is the `HF_ENDPOINT`.

    Use as a context manager (or call `stop()`). `requests` records `(method, path, Range header
    or None)` of every request; `cut_at` and `corrupt` inject faults (see the module docstring).
    """

    def __init__(self, repos):
        self.repos = {repo: _describe_repo(folder) for repo, folder in repos.items()}
        self.requests, self.cut_at, self.corrupt = [], {}, set()
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _HubHandler)
        self._server.daemon_threads = True
        self._server.hub = self
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self):
        """Stop serving and close the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def file_requests(self, method="GET"):
        """Paths of the repo files requested with `method`, in order (`owner/name/path`)."""
        found = []
        for verb, path, _ in self.requests:
            repo_and_file = path.split("/resolve/", 1)
            if verb == method and len(repo_and_file) == 2:
                found.append(f"{repo_and_file[0].lstrip('/')}/{repo_and_file[1].split('/', 1)[1]}")
        return found


class _HubHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the client expects

    def log_message(self, *args):
        pass

    def do_GET(self):
        self._dispatch(body=True)

    def do_HEAD(self):
        self._dispatch(body=False)

    # ----------------------------------------------------------------------------- routing
    def _dispatch(self, body):
        self.server.hub.requests.append((self.command, self.path, self.headers.get("Range")))
        url = urllib.parse.urlsplit(self.path)
        parts = [urllib.parse.unquote(p) for p in url.path.strip("/").split("/")]
        if parts[:2] == ["api", "models"] and len(parts) >= 6 and parts[4] in ("revision", "tree"):
            repo, rev = "/".join(parts[2:4]), parts[5]
            commit, files = self._repo(repo, rev)
            if commit is None:
                return
            if parts[4] == "revision":
                siblings = [{"rfilename": p} for p in sorted(files)]
                return self._json(dict(id=repo, modelId=repo, sha=commit, private=False, siblings=siblings), body)
            folder = "/".join(parts[6:])
            recursive = urllib.parse.parse_qs(url.query).get("recursive", ["false"])[0].lower() == "true"
            return self._json(self._tree(files, folder, recursive), body)
        if len(parts) >= 5 and parts[2] == "resolve":
            repo, rev, path = "/".join(parts[:2]), parts[3], "/".join(parts[4:])
            commit, files = self._repo(repo, rev)
            if commit is None:
                return
            if path not in files:
                return self._error(404, "EntryNotFound", commit)
            return self._file(commit, files[path], body)
        self._error(404, "RepoNotFound")

    def _repo(self, repo, rev):
        """`(commit, files)` of `repo` at `rev`, or `(None, None)` after answering 404."""
        if repo not in self.server.hub.repos:
            self._error(404, "RepoNotFound")
            return None, None
        commit, files = self.server.hub.repos[repo]
        if rev not in ("main", commit):
            self._error(404, "RevisionNotFound")
            return None, None
        return commit, files

    @staticmethod
    def _tree(files, folder, recursive):
        """Tree API entries under `folder`: its files and sub-folders (everything if `recursive`)."""
        prefix = f"{folder}/" if folder else ""
        entries, folders = [], set()
        for path, entry in sorted(files.items()):
            if not path.startswith(prefix):
                continue
            rest = path[len(prefix):].split("/")
            for depth in range(1, len(rest) if recursive else min(2, len(rest))):
                folders.add(prefix + "/".join(rest[:depth]))
            if recursive or len(rest) == 1:
                entries.append({k: v for k, v in entry.items() if k != "local"})
        entries += [dict(type="directory", path=p, oid=hashlib.sha1(p.encode()).hexdigest()) for p in sorted(folders)]
        return entries

    # --------------------------------------------------------------------------- answers
    def _send(self, status, headers, payload, body):
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, str(value))
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if body:
            self.wfile.write(payload)

    def _json(self, data, body):
        self._send(200, {"Content-Type": "application/json"}, json.dumps(data).encode(), body)

    def _error(self, status, code, commit=None):
        headers = {"X-Error-Code": code, "X-Error-Message": f"{code} (local test hub)"}
        if commit is not None:
            headers["X-Repo-Commit"] = commit
        self._send(status, headers, json.dumps({"error": code}).encode(), True)

    def _file(self, commit, entry, body):
        size, path = entry["size"], entry["path"]
        start = 0
        ranged = self.headers.get("Range", "")
        if ranged.startswith("bytes=") and ranged[6:].endswith("-"):
            start = min(int(ranged[6:-1]), size)
        headers = {"X-Repo-Commit": commit, "Accept-Ranges": "bytes", "Content-Type": "application/octet-stream",
                   "ETag": f'"{entry["oid"]}"'}
        if "lfs" in entry:
            headers.update({"X-Linked-Etag": f'"{entry["lfs"]["oid"]}"', "X-Linked-Size": size})
        if start:
            headers["Content-Range"] = f"bytes {start}-{size - 1}/{size}"
        self.send_response(206 if start else 200)
        for key, value in headers.items():
            self.send_header(key, str(value))
        self.send_header("Content-Length", str(size - start))
        self.end_headers()
        if not body:
            return
        end = min(size, self.server.hub.cut_at.get(path, size))
        with open(entry["local"], "rb") as f:
            f.seek(start)
            position = start
            while position < end:
                chunk = f.read(min(CHUNK, end - position))
                if path in self.server.hub.corrupt:
                    chunk = bytes(255 - b for b in chunk[:64]) + chunk[64:]
                self.wfile.write(chunk)
                position += len(chunk)
        if end < size:  # the fault: close the connection mid-file
            self.close_connection = True
