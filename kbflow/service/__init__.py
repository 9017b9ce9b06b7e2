"""The local kbflow service: one process per store that keeps Prefect, Great Expectations and the model
loaded, and runs the CLI's heavy commands (and an application's searches) for its clients.

It sits between the CLI and the flows (cli -> service -> flows): `operations` holds what each served
command does (the CLI runs the same functions in-process when no service runs), `app` the HTTP API on
a Unix socket (FastAPI + uvicorn), `__main__` the process (`python -m kbflow.service CONFIG`), started
by `kbflow server start` or by the first command that would use it (`[server] autostart`). The client
side is kbflow.client (core: it imports nothing heavy).
"""
