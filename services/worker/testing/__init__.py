"""Test-only parts of the worker: never imported unless a test flag asks for them (see
services/worker/faults.py)."""
