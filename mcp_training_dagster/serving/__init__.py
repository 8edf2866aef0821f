"""The serving core: records -> validated table -> feature windows -> calibrated scores and reasons.

Every module here is copied verbatim into every model package (as ``mcp_<name>.py``, imports rewritten by
``domain.packaging.rewrite_imports``) so the inference side scores exactly as training did. The rule that
makes that possible, tested in ``mcp_training_dagster_tests/serving/test_import_rule.py``: a module here
imports only the standard library, its siblings here, and the package's declared dependencies
(``domain.packaging.DEPENDENCIES``); an optional accelerator is imported under ``try/except ImportError``.
Never the rest of ``mcp_training_dagster`` (domain, settings, Dagster).
"""
