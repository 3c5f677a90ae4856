"""Real servers for the test suite: Apache Kafka (KRaft), a MongoDB stand-in, Pub/Sub emulator.

``fixtures`` is the pytest plugin (loaded from ``tests/conftest.py``); ``prepare`` pre-fetches
the Maven artifacts (``python -m tests.servers.prepare``). See ``README.md`` in this folder.
"""
