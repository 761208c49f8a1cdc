"""Load tests: Keyway against the same traffic sent straight to the fake provider.

Run ``python loadtests/run.py`` (see loadtests/README.md); the modules here are its parts.
"""
