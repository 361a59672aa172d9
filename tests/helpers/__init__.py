"""
Shared test code (no test modules, no fixtures): import it as ``tests.helpers.<module>``.

- :mod:`tests.helpers.archive`: a real archive of exports, to check and to damage.
- :mod:`tests.helpers.clients`: retry policies, the day ``T0``, ``now_ms`` and ``make_client``.
- :mod:`tests.helpers.dags`: write, load and run DAG files on Airflow 2 and 3.
- :mod:`tests.helpers.deployment`: real Airflow components in a temporary home (end-to-end tests).
- :mod:`tests.helpers.exports`: what an export file must hold, and how to read one.
- :mod:`tests.helpers.relay`: an HTTP proxy or gateway in front of the stand-in.
- :mod:`tests.helpers.waiting`: wait for a condition with a deadline instead of sleeping.

Fixtures (``standin``/``fake``, ``asana_conn``, ``airflow_db``...) live in ``tests/conftest.py``.
"""
