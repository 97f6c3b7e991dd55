"""What the tests share: the one launcher for real service processes (fleet.py, built on
services/devfleet), the fleet key and its tokens (auth.py), sector and request builders
(sectors.py, index.py, worker.py), the test's own ManagerService endpoint (worker.py), the typed
fake worker for the manager's unit tests (fake_worker.py) and the PostgreSQL fixture
(postgres.py). See tests/README.md for the layout."""
