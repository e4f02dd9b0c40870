"""Helpers the tests share, and the suite's own pytest plugins: never a test.

Owns what more than one test module needs (the real-gateway harness, clients, labs,
registries, sample data) and the plugins tests/conftest.py loads (astguard, databases).
A module under tests/ imports helpers from here and from no other module under tests/
(tests/test_layout.py checks it); fixtures stay in conftest.py files, which may import
their helpers from here. It must never hold a test.
"""
