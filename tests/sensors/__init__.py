"""Tests of ``airflow_provider_asana_audit.sensors``."""
