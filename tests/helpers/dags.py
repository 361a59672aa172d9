"""
Write, load and run DAG files, the same way on Airflow 2 and 3.

Airflow 3's ``dag.test()`` syncs the DAGs folder to the metadata database, so a DAG under test lives in
a real file in the session's DAGs folder (``AIRFLOW_HOME/dags``, see ``tests/conftest.py``). It is
parsed with a ``DagBag``, as the DAG processor does, and run in this process with ``dag.test()``: a real
DAG run, with templating, XCom, reschedules, deferrals and task states, against the stand-in.

Airflow is imported inside the functions: ``tests/conftest.py`` must set ``AIRFLOW_HOME`` first.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "EXAMPLE_DAGS",
    "DagRunResult",
    "copy_example",
    "load_dag",
    "load_dagbag",
    "reschedules",
    "run_dag",
    "write_dag",
]

#: The repository's example DAGs.
EXAMPLE_DAGS = Path(__file__).resolve().parents[2] / "example_dags"


@dataclass(frozen=True)
class DagRunResult:
    """The outcome of one DAG run."""

    dag_run: Any
    #: The DAG run's final state.
    state: str
    #: Each task's final state, by task id (``None``: never ran).
    task_states: dict[str, str | None]

    @property
    def task_state(self) -> str | None:
        """The state of the DAG's only task."""
        (state,) = self.task_states.values()
        return state

    def xcom(self, task_id: str) -> Any:
        """The ``return_value`` XCom the task pushed, or ``None``."""
        return self.dag_run.get_task_instance(task_id).xcom_pull(task_ids=task_id)


def load_dagbag(path: Path) -> Any:
    """Parse ``path`` (a DAG file or a folder) as the DAG processor does."""
    from airflow_provider_asana_audit.version_compat import AIRFLOW_V_3_0_PLUS

    if AIRFLOW_V_3_0_PLUS:
        from airflow.dag_processing.dagbag import DagBag

        return DagBag(dag_folder=str(path))
    from airflow.models.dagbag import DagBag as LegacyDagBag

    return LegacyDagBag(dag_folder=str(path), include_examples=False)


def load_dag(path: Path, dag_id: str) -> Any:
    """The DAG ``dag_id`` of the file ``path``, which must parse without errors."""
    bag = load_dagbag(path)
    assert not bag.import_errors, bag.import_errors
    return bag.dags[dag_id]


def write_dag(dags_folder: Path, dag_id: str, source: str) -> Path:
    """Write a DAG file named after its DAG into the DAGs folder; return its path."""
    path = dags_folder / f"{dag_id}.py"
    path.write_text(source)
    return path


def copy_example(dags_folder: Path, file_name: str) -> Path:
    """Copy one of the repository's example DAG files into the DAGs folder; return the copy."""
    path = dags_folder / file_name
    shutil.copy(EXAMPLE_DAGS / file_name, path)
    return path


def run_dag(dag: Any, logical_date: datetime | Literal["now"] | None = "now") -> DagRunResult:
    """
    Run ``dag`` once with ``dag.test()``, in this process.

    :param logical_date: the run's logical date; ``"now"``: now, as ``dag.test()`` does by default;
        ``None``: on Airflow 3, a manual run without a logical date (so without a data interval).
    """
    from airflow_provider_asana_audit.version_compat import AIRFLOW_V_3_0_PLUS

    if logical_date == "now":
        dag_run = dag.test()
    elif AIRFLOW_V_3_0_PLUS:
        dag_run = dag.test(logical_date=logical_date)
    else:
        # Re-running a date clears its DagRun, whose note table refers to the FAB user table;
        # SQLAlchemy can only resolve that once FAB's models are imported.
        import airflow.providers.fab.auth_manager.models  # noqa: F401

        dag_run = dag.test(execution_date=logical_date)
    return DagRunResult(
        dag_run=dag_run,
        state=str(dag_run.state),
        task_states={
            ti.task_id: None if ti.state is None else str(ti.state) for ti in dag_run.get_task_instances()
        },
    )


def reschedules(run: DagRunResult, task_id: str) -> int:
    """How many times the task was rescheduled in this run (rows of ``task_reschedule``)."""
    from airflow.models.taskreschedule import TaskReschedule
    from airflow.utils.session import create_session

    ti = run.dag_run.get_task_instance(task_id)
    with create_session() as session:
        rows = session.query(TaskReschedule).all()
        # Airflow 3 links a reschedule to the task instance's id, Airflow 2 to (dag_id, run_id, ...).
        return sum(
            1
            for row in rows
            if getattr(row, "ti_id", None) == getattr(ti, "id", object())
            or (getattr(row, "dag_id", None), getattr(row, "run_id", None), getattr(row, "task_id", None))
            == (ti.dag_id, ti.run_id, ti.task_id)
        )
