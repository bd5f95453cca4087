"""The store servers the integration tests run against (see base.py)."""
