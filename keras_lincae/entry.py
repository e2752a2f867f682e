"""What the `lincae` command and the recipes share: backend choice, one-line errors, folder checks.

Nothing here imports Keras: an entry point parses its arguments, calls `prepare` (which picks the
Keras backend) and only then imports Keras; `run` turns user errors into one line on stderr and
exit status 2 (130 on Ctrl-C), or the full traceback with `--debug`.

    def main(argv=None):
        args = build_parser().parse_args(argv)       # a parser with `add_flags(parser)`
        entry.prepare(PROG, args.backend, args.debug)
        ...

    if __name__ == "__main__":
        sys.exit(entry.run(main, PROG))
"""

import argparse
import builtins
import importlib
import importlib.metadata
import importlib.util
import json
import os
import re
import sys
import traceback

BACKENDS = ("jax", "torch", "tensorflow")  # the automatic choice prefers them in this order
USER_ERRORS = (ValueError, TypeError, OSError, ImportError, MemoryError, RuntimeError)
BUGS = (NotImplementedError, RecursionError)  # RuntimeErrors that are not the user's
MAX_MESSAGE = 800  # characters of an error message shown on its one line
# XLA:CPU's concurrency-optimised scheduler keeps more activations alive at once for no speed on
# few cores: off, a 10 s `lin_cae` decode peaks at 3.4 GB instead of 4.6 GB (benchmarks/README.md).
# XLA reads XLA_FLAGS once per process, so programs set it before JAX starts.
JAX_XLA_FLAGS = ("--xla_cpu_enable_concurrency_optimized_scheduler=false",)
# Training commands on jax (jaxlib >= 0.10, where XLA:CPU hands convolutions, dots, reductions and
# elementwise fusions to YNNPACK by default): YNNPACK for single dots and reductions only. XLA's
# Eigen convolutions take their gradients faster, and the reduced `lin_cae` training step takes
# 1.10 s instead of 1.30 s; inference keeps YNNPACK's convolutions (a 10 s decode: 10.8 s, 11.5 s
# without them). benchmarks/README.md has the runs.
JAX_TRAINING_XLA_FLAGS = ("--xla_cpu_experimental_ynn_fusion_type=individual_dot,reduce",)
# glibc's malloc on transparent huge pages: the frameworks allocate and free their large buffers
# at every call, and each fresh 4 KB page is a fault (a fifth of a JAX training step's CPU time).
# With it a 10 s `lin_cae` decode on torch is 1.3x faster and a jax encode 1.2x (benchmarks/README.md).
# glibc reads GLIBC_TUNABLES once, at process start: commands re-execute themselves with it.
HUGE_PAGE_TUNABLE = "glibc.malloc.hugetlb=1"
# Training commands also keep freed memory in the process (no mmap for large blocks, no trimming):
# each step reuses the last step's pages instead of faulting fresh ones in, which makes eager
# torch's training step 1.2x faster (jax and tensorflow unchanged). The process then holds its
# high-water mark until it exits, so inference commands (where peak memory counts) do not set it.
TRAINING_MALLOC_TUNABLES = ("glibc.malloc.mmap_max=0", "glibc.malloc.trim_threshold=4294967296")

_debug = False


class ArgumentParser(argparse.ArgumentParser):
    """An argparse parser whose usage errors are one line: `PROG: error: MESSAGE`, exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def add_flags(parser, backend=True, default=None):
    """Add `--debug` (and `--backend`) to `parser`; `default=argparse.SUPPRESS` for subcommands."""
    if backend:
        parser.add_argument("--backend", choices=("jax", "tensorflow", "torch"), default=default,
                            help="Keras backend (default: KERAS_BACKEND, else Keras' default if "
                                 "installed, else the first installed of jax, torch, tensorflow)")
    parser.add_argument("--debug", action="store_true", default=default or False,
                        help="show the full traceback of an error")


def note(prog, message):
    print(f"{prog}: {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------ backend


def prepare(prog, backend=None, debug=False, needs_keras=True, training=False):
    """Set the process up before Keras is imported: quiet TensorFlow's C++ logs, choose the backend,
    and on JAX add `jax_xla_flags(training)` to XLA_FLAGS (less memory on CPU; faster training).

    TF_CPP_MIN_LOG_LEVEL=3 (when unset, and not with `debug`) hides TensorFlow's C++ INFO, WARNING
    and ERROR lines, such as `failed call to cuInit` on machines without a GPU (an ERROR line, so
    level 2 keeps it); the lines TensorFlow writes while it is imported ignore that variable, so
    the TensorFlow backend is imported here with stderr silenced (`import_quietly`). Returns the
    backend name (None when not `needs_keras`).
    """
    global _debug
    _debug = bool(debug)
    if not debug:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if not needs_keras:
        return None
    backend = choose_backend(prog, backend)
    if backend == "tensorflow":
        import_quietly("tensorflow")
    if backend == "jax":
        add_xla_flags(jax_xla_flags(training))
    return backend


def jax_xla_flags(training=False, jaxlib_version=None):
    """The XLA flags our commands run jax with: `JAX_XLA_FLAGS`, and for a training command
    `JAX_TRAINING_XLA_FLAGS` where the installed jaxlib (`jaxlib_version`, e.g. "0.10.2"; default:
    the installed one, read without importing it) knows them (XLA aborts on an unknown flag)."""
    if not training:
        return JAX_XLA_FLAGS
    if jaxlib_version is None:
        try:
            jaxlib_version = importlib.metadata.version("jaxlib")
        except importlib.metadata.PackageNotFoundError:
            return JAX_XLA_FLAGS
    match = re.match(r"(\d+)\.(\d+)", jaxlib_version)
    known = match is not None and (int(match[1]), int(match[2])) >= (0, 10)
    return JAX_XLA_FLAGS + (JAX_TRAINING_XLA_FLAGS if known else ())


def malloc_environment(environ=os.environ, training=False, libc=None, thp_mode=None):
    """A copy of `environ` with our malloc tunables added to GLIBC_TUNABLES, or None when none
    applies: `HUGE_PAGE_TUNABLE` needs glibc >= 2.35 and transparent huge pages on, the
    `TRAINING_MALLOC_TUNABLES` (with `training`) glibc >= 2.26; a tunable that GLIBC_TUNABLES
    already names is the user's choice and stays (`glibc.malloc.hugetlb=0` opts out).

    `libc`: e.g. "glibc 2.36", "" when not glibc (default: this process's); `thp_mode`: always,
    madvise or never (default: the kernel's, from /sys/kernel/mm/transparent_hugepage/enabled).
    """
    libc = _libc_version() if libc is None else libc
    match = re.fullmatch(r"glibc (\d+)\.(\d+).*", libc or "")
    version = (int(match[1]), int(match[2])) if match else (0, 0)
    wanted = []
    if version >= (2, 35) and (_transparent_huge_pages() if thp_mode is None else thp_mode) in ("always", "madvise"):
        wanted.append(HUGE_PAGE_TUNABLE)
    if training and version >= (2, 26):
        wanted.extend(TRAINING_MALLOC_TUNABLES)
    current = environ.get("GLIBC_TUNABLES", "")
    added = [t for t in wanted if t.split("=")[0] not in current]
    if not added:
        return None
    return dict(environ, GLIBC_TUNABLES=":".join(([current] if current else []) + added))


def command_environment(backend, environ=os.environ, training=False):
    """A copy of `environ` as `lincae` and the recipes run `backend` (jax, tensorflow, torch):
    `jax_xla_flags(training)` on jax and, where they apply, the malloc tunables (`malloc_environment`; the
    training ones for a training command). For scripts that start them as subprocesses (the
    benchmarks)."""
    environ = dict(malloc_environment(environ, training) or environ)
    if backend == "jax":
        add_xla_flags(jax_xla_flags(training), environ)
    return environ


def restart_with_malloc_tunables(training=False):
    """Re-execute this command once with `malloc_environment(training=training)` (when something
    applies), before any framework is imported. Call it only where the process is the command
    (`__main__`)."""
    environ = malloc_environment(training=training)
    if environ is None or not sys.executable:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(sys.executable, [sys.executable] + sys.orig_argv[1:], environ)
    except OSError:  # cannot re-execute (e.g. an embedded interpreter): run as is
        pass


def _libc_version():
    try:
        return os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (AttributeError, ValueError, OSError):
        return ""


def _transparent_huge_pages():
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            return re.search(r"\[(\w+)\]", f.read())[1]
    except (OSError, TypeError):
        return "never"


def add_xla_flags(flags, environ=os.environ):
    """Append each of `flags` (`--name=value`) to XLA_FLAGS unless the user already set `--name`."""
    current = environ.get("XLA_FLAGS", "")
    for flag in flags:
        if flag.split("=")[0] not in current:
            current = f"{current} {flag}".strip()
    environ["XLA_FLAGS"] = current


def import_quietly(module):
    """Import `module` with stderr (file descriptor 2) silenced, unless `--debug`; return it, or
    None when it is not installed or fails to import (a broken install raises anything)."""
    if not _installed(module):
        return None
    if _debug or module in sys.modules:
        return _import_or_none(module)
    sys.stderr.flush()
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        return _import_or_none(module)
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def _import_or_none(module):
    try:
        return importlib.import_module(module)
    except Exception:
        return None


def choose_backend(prog, requested=None):
    """Set KERAS_BACKEND: `requested` (--backend), else KERAS_BACKEND, else Keras' default backend
    if it imports, else the first installed of `BACKENDS` (named on stderr). Returns the name."""
    if "keras" in sys.modules:
        current = sys.modules["keras"].config.backend()
        if requested and requested != current:
            raise ValueError(f"--backend {requested}: Keras already runs on {current} in this process")
        return current
    if requested:
        _require(requested, f"--backend {requested}")
    elif os.environ.get("KERAS_BACKEND"):
        requested = os.environ["KERAS_BACKEND"]
        _require(requested, f"KERAS_BACKEND={requested}")
    else:
        default = keras_default_backend()
        requested = next((b for b in (default,) + BACKENDS if import_quietly(b)), None)
        if requested is None:
            raise ImportError("no Keras backend is installed: pip install jax (or torch, or tensorflow)")
        if requested != default:
            note(prog, f"Keras' default backend {default} is not available; using {requested} "
                       "(choose with --backend or KERAS_BACKEND)")
    os.environ["KERAS_BACKEND"] = requested
    return requested


def keras_default_backend():
    """The backend Keras uses without KERAS_BACKEND: `backend` in keras.json, else tensorflow."""
    if "KERAS_HOME" in os.environ:
        home = os.environ["KERAS_HOME"]
    else:
        user = os.path.expanduser("~")
        home = os.path.join(user if os.access(user, os.W_OK) else "/tmp", ".keras")
    try:
        with open(os.path.join(home, "keras.json")) as f:
            config = json.load(f)
    except (OSError, ValueError):
        return "tensorflow"
    return config.get("backend", "tensorflow") if isinstance(config, dict) else "tensorflow"


def _installed(module):
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _require(backend, what):
    if backend in BACKENDS and not _installed(backend):
        raise ImportError(f"{what}: {backend} is not installed (pip install {backend})")


# ------------------------------------------------------------------------------------- errors


def run(main, prog):
    """Call `main()` as a command and return its exit status: 0 (or main's int), 2 after a user
    error (one line `PROG: error: ...` on stderr; the traceback too after `prepare(debug=True)`),
    130 after Ctrl-C. Other exceptions (bugs) propagate with their traceback."""
    try:
        status = main()
    except KeyboardInterrupt:
        if _debug:
            traceback.print_exc()
        note(prog, "interrupted")
        return 130
    except Exception as error:
        message = user_error_message(error)
        if message is None:
            raise
        if _debug:
            traceback.print_exc()
        note(prog, f"error: {message}")
        return 2
    return status if isinstance(status, int) else 0


def user_error_message(error):
    """One line describing `error` if it is the user's (bad input, missing file, no memory, ...),
    else None. TensorFlow data-pipeline errors are unwrapped to the Python error inside them."""
    text = str(error).split("Traceback (most recent call last)")[0]
    if _is_tensorflow_error(error):
        inner = re.search(r"\b(\w+(?:Error|Exception)): (.+)", text.splitlines()[0] if text else "")
        if inner:
            if not _is_user_error_name(inner.group(1)):
                return None
            text = inner.group(2)
        elif type(error).__name__ != "ResourceExhaustedError":  # out of memory
            return None
        text = re.sub(r"\{\{[^}]*\}\}", "", text)
    elif not isinstance(error, USER_ERRORS) or isinstance(error, BUGS):
        return None
    text = " ".join(text.split())
    if isinstance(error, MemoryError):
        text = f"out of memory: {text}" if text else "out of memory"
    text = text or type(error).__name__
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 4] + " ..."


def _is_tensorflow_error(error):
    return any(c.__name__ == "OpError" and c.__module__.startswith("tensorflow") for c in type(error).__mro__)


def _is_user_error_name(name):
    kind = getattr(builtins, name, None)
    return isinstance(kind, type) and issubclass(kind, USER_ERRORS) and not issubclass(kind, BUGS)


# -------------------------------------------------------------------------------------- files


def check_writable_folder(path, what="output folder"):
    """Raise a one-line OSError unless `path` is a writable folder or can be created as one."""
    path = os.path.abspath(os.path.expanduser(os.fspath(path)))
    existing = path
    while not os.path.lexists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise NotADirectoryError(f"{what} {path}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(f"{what} {path}: {existing} is not writable")
    return path
