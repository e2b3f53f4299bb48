"""The head's dashboard: a web UI and its JSON API, served by one process beside the GCS.

    launcher.py  the head binds the socket and starts the process (node.py calls it)
    server.py    the aiohttp process: pages, static files, the API, behind auth
    auth.py      the cluster token and one-time login links
    api.py       /api/*: every answer read through ray_core.util.state, never a copy
    static/      the one page and its script: polls /api/ and redraws in place

The dashboard holds no cluster state of its own: what it shows is what the state API
(and so `ray_core list ...`) says at that moment.
"""
