"""Tests of the DAGs in the repository's ``example_dags`` folder."""
