"""The shared kernel: what the api, the model services, the job workers and the gateway all need.

Errors and their problem+json form, JSON logging with the request id, the gateway's signature and
header names, secrets checks, and the database (URL, engine, tables, migrations). It imports neither
``services`` nor ``gateway``; both import it (tests/unit/test_import_graph.py keeps it so).
"""
