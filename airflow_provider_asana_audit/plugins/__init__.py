"""The Airflow UI plugin of this provider: the archive page (see :mod:`.archive_page`)."""
