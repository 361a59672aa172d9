"""
Shared test code (no test modules, no fixtures): import it as ``tests.helpers.<module>``.

- :mod:`tests.helpers.dags`: write, load and run DAG files on Airflow 2 and 3.
- :mod:`tests.helpers.exports`: what an export file must hold, and how to read one.
- :mod:`tests.helpers.waiting`: wait for a condition with a deadline instead of sleeping.
"""
