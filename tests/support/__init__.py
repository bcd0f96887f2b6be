"""Test helpers shared by every test package (tests/conftest.py puts tests/ on sys.path)."""
