"""The database every process shares: the URL, the engine, the tables and their migrations.

Database rows live here, apart from ``services/models`` (the ML models), so "model" means one thing per folder.
What reads and writes the rows for one process kind stays with it (``services/db``: inference logs and jobs;
``gateway/keys.py``: API keys).
"""
