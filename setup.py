"""The one compiled module of the project: Pillow's resize passes, vectorised (services/models/_resample.c).

Everything else about the package is in pyproject.toml. ``optional``: without a C compiler the build goes on and
services/models/resample.py falls back to Pillow (the same bytes, slower).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "services.models._resample",
            ["services/models/_resample.c"],
            extra_compile_args=["-O3"],
            optional=True,
        )
    ]
)
