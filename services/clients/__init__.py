"""How the api and the job workers reach the models: one client contract, in process or over HTTP.

- :mod:`services.clients.base`: the :class:`~services.clients.base.ModelClient` contract (sync), its
  async twin for the routes, and the one rule that turns a failed call into ``ModelUnavailable``.
- :mod:`services.clients.inprocess`: the models in this process, each loaded on first use.
- :mod:`services.clients.remote`: the model services over BentoML's clients (the api's ``bentoml.depends``
  handles, a worker's ``SyncHTTPClient``).
- :mod:`services.clients.threaded`: the async side of an in-process client (a threadpool).
- :mod:`services.clients.jobs`: which of them a job worker uses.

Cross-cutting behaviour wraps these (the result cache: services/http/caching.py; the inference log:
services/http/recording.py).
"""
