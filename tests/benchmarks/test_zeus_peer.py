"""benchmarks/zeus_peer.py without zeus installed (CI): one line saying what to install, exit 2.

The real-Zeus run itself needs ``zeus[bso-server]`` in its own environment (pydantic < 2); its
output is quoted in the README with the command that printed it.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.bench_scripts import BENCHMARKS


def test_without_zeus_it_says_what_to_install_in_one_line():
    try:
        import zeus  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.fail("zeus is installed in the test environment; it must not be a CI dependency")
    proc = subprocess.run([sys.executable, str(BENCHMARKS / "zeus_peer.py"), "--seeds", "1", "--horizon", "10"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert lines[0].startswith("zeus_peer: needs zeus 0.16.0")
    assert 'pip install "zeus[bso-server]==0.16.0" greenlet' in lines[0]
    assert proc.stdout == ""
