"""Fetching vLLM 0.33.0's source: checked against its pinned sha256, only vllm/'s Python files
unpacked, a bad download one line (the real fetch runs in tests/vllm_plugin/conftest.py)."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import pytest

from camel_vllm.testing import vllm_source


def _sdist(path: Path, files: dict[str, bytes]) -> str:
    with tarfile.open(path, "w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def served(tmp_path, monkeypatch):
    monkeypatch.delenv(vllm_source.SOURCE_ENV, raising=False)

    def serve(files: dict[str, bytes], pin: str | None = None) -> Path:
        sdist = tmp_path / "vllm-0.33.0.tar.gz"
        digest = _sdist(sdist, files)
        monkeypatch.setattr(vllm_source, "SDIST_URL", sdist.as_uri())
        monkeypatch.setattr(vllm_source, "SDIST_SHA256", pin or digest)
        return tmp_path / "cache"
    return serve


def test_only_the_packages_python_files_are_unpacked_once(served) -> None:
    cache = served({"vllm-0.33.0/vllm/v1/core/sched/scheduler.py": b"class Scheduler: ...\n",
                    "vllm-0.33.0/vllm/_C.abi3.so": b"\0", "vllm-0.33.0/setup.py": b"raise SystemExit\n"})
    src = vllm_source.vllm_033_source(cache)
    assert (src / "v1" / "core" / "sched" / "scheduler.py").read_text() == "class Scheduler: ...\n"
    assert sorted(p.name for p in src.rglob("*") if p.is_file()) == ["scheduler.py"]
    assert not (src.parent / "setup.py").exists()
    (src / "v1" / "core" / "sched" / "scheduler.py").write_text("kept")
    assert vllm_source.vllm_033_source(cache) == src  # the stamp holds: not fetched again
    assert (src / "v1" / "core" / "sched" / "scheduler.py").read_text() == "kept"


def test_a_download_that_is_not_the_pinned_file_is_one_line(served) -> None:
    cache = served({"vllm-0.33.0/vllm/v1/core/sched/scheduler.py": b"x\n"}, pin="0" * 64)
    with pytest.raises(vllm_source.SourceFetchError) as err:
        vllm_source.vllm_033_source(cache)
    assert str(err.value).startswith("vllm source: vllm-0.33.0.tar.gz has sha256 ") and "\n" not in str(err.value)
    assert not any(p.name.startswith("vllm-0.33.0-") for p in cache.iterdir())  # nothing half-unpacked


def test_a_member_leaving_its_folder_or_a_missing_scheduler_is_refused(served) -> None:
    cache = served({"vllm-0.33.0/vllm/../../evil.py": b"x\n"})
    with pytest.raises(vllm_source.SourceFetchError, match="leaves its folder"):
        vllm_source.vllm_033_source(cache)
    cache = served({"vllm-0.33.0/vllm/other.py": b"x\n"})
    with pytest.raises(vllm_source.SourceFetchError, match="holds no vllm/v1/core/sched/scheduler.py"):
        vllm_source.vllm_033_source(cache)


def test_an_unreachable_registry_is_one_line(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv(vllm_source.SOURCE_ENV, raising=False)
    monkeypatch.setattr(vllm_source, "SDIST_URL", (tmp_path / "missing.tar.gz").as_uri())
    with pytest.raises(vllm_source.SourceFetchError, match=r"^vllm source: cannot fetch vllm-0.33.0.tar.gz"):
        vllm_source.vllm_033_source(tmp_path / "cache")
