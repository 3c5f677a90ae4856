"""Packaging for mstream.

The repository keeps ``operators/`` and ``ui/`` at the top level; they are installed
inside the package as ``mstream.operators`` and ``mstream.ui`` via ``package_dir``,
so site-packages never gets a top-level ``operators`` or ``ui`` module.
"""

from pathlib import Path

from setuptools import find_packages, setup

# The Rhai engine is a Rust extension in this repository (needs cargo to build):
# `pip install -e '.[rhai]'` builds it from this local path with maturin.
RHAI_EXTENSION = (Path(__file__).resolve().parent / "rust" / "mstream_rhai").as_uri()

core_packages = find_packages(include=["mstream", "mstream.*"])

setup(
    name="mstream",
    version="0.1.0",
    description="Data streaming bridge: MongoDB change streams, Kafka and Pub/Sub to "
    "MongoDB, Kafka, Pub/Sub and HTTP, with BSON/JSON/Avro conversion",
    python_requires=">=3.11",
    packages=[*core_packages, "mstream.operators", "mstream.ui"],
    package_dir={
        "mstream": "mstream",
        "mstream.operators": "operators",
        "mstream.ui": "ui",
    },
    package_data={"mstream.ui": ["static/*", "templates/*"], "mstream": ["py.typed"]},
    install_requires=[
        "reactivex>=4.0,<5",
        "pymongo>=4.9,<4.21",
        "kafka-python>=2.2,<4",
        # the default Kafka client (client = "auto"): librdkafka, several times faster
        "confluent-kafka>=2.4",
        "crc32c>=2.4",
        "google-cloud-pubsub>=2.20",
        "fastavro>=1.9",
        "tornado>=6.4",
        "marshmallow>=3.20,<5",
        "cryptography>=42",
        "requests>=2.31",
        "orjson>=3.9",
        # validates a chunk of JSON payloads in one pass without making documents
        "msgspec>=0.18",
        "prometheus-client>=0.20",
        "lupa>=2.0",
        "fastjsonschema>=2.19",
    ],
    extras_require={
        "test": [
            "pytest>=8",
            "pytest-timeout>=2.3",
            "hypothesis>=6.100",
            "psutil>=5.9",
            "nbclient>=0.10",
            "nbformat>=5.10",
            "ipykernel>=6.29",
            "ruff>=0.6",
            "mypy>=1.10",
            "selenium>=4.20",
            # the notebooks the suite executes (tests/test_notebooks.py) plot with these
            "pandas>=2.1",
            "matplotlib>=3.8",
        ],
        # `pip install -e '.[notebooks]'`, then `jupyter lab notebooks/`
        "notebooks": [
            "jupyterlab>=4.2",
            "pandas>=2.1",
            "matplotlib>=3.8",
            "nbclient>=0.10",
            "nbformat>=5.10",
            "ipykernel>=6.29",
        ],
        "confluent": [],  # kept for old install lines: confluent-kafka is a dependency now
        "rhai": [f"mstream-rhai @ {RHAI_EXTENSION}"],
    },
    entry_points={"console_scripts": ["mstream=mstream.cli:main"]},
)
