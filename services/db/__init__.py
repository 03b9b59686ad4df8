"""Database rows (SQLModel tables), the engine, migrations and the inference-log writer.

Kept apart from ``services/models`` (the ML models), so "model" means one thing per folder.
"""
