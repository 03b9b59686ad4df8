"""Batch jobs: the api's queue, the Celery app and task, the chunk processing, the job store, the submit command.

docs/adr/0005-job-broker.md has the design; TECHNICAL.md ("Batch jobs") what each module does.
"""
