"""The agent of one Docker host: terminal streams, port previews and the host's workspaces,
under grants of the API.

Only `agent.app` and `agent.terminal` touch the Docker engine; `agent.grants`, `agent.proxy`
and `agent.workspace_sync` (the API's side of the workspace sync) import nothing of it, so the
API may use them.
"""
