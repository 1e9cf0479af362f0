"""The agent of one Docker host: terminal streams and port previews, under grants of the API.

Only `agent.app` and `agent.terminal` touch the Docker engine; `agent.grants` and
`agent.proxy` import nothing of it, so the API may use them.
"""
