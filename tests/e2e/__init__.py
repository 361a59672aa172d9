"""End-to-end tests: the package in real Airflow components (see ``tests/helpers/deployment.py``)."""
