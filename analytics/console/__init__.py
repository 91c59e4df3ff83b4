"""The review console: a FastAPI app with server-rendered pages and a JSON API.

Start it with :func:`analytics.console.app.create_console`; ``loraloop web`` runs
it under uvicorn. Roles and permissions: docs/pool.md, "Console".
"""
