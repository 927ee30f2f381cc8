"""`clauseloop serve`: the HTTP API, the review page and the OpenAI-compatible student in one process.

``create_app(ServeConfig(...))`` builds the FastAPI app (:mod:`clauseloop.serve.app`); ``ServeConfig`` holds every
default (:mod:`clauseloop.serve.config`). FastAPI loads only when ``create_app`` is used.
"""

from clauseloop.serve.config import API_KEY_ENV, DEFAULT_DB, ServeConfig


def create_app(*args, **kwargs):
    from clauseloop.serve.app import create_app as build

    return build(*args, **kwargs)


__all__ = ["API_KEY_ENV", "DEFAULT_DB", "ServeConfig", "create_app"]
