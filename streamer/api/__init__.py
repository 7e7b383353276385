"""`streamer serve`: the HTTP API (status, analyze, events, templates, summary) and the dashboard page.

app.create_app() builds the FastAPI application; streamer/commands/serve.py runs it on uvicorn. The database
is only read (every session is read-only); scoring uses the same decoder and score stage as `streamer run`.
"""
