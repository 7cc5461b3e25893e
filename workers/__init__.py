"""ecwid-relay's worker side: the RQ jobs, the worker entry points, and the code both processes share.

Nothing under `workers/` imports Starlette, so worker processes stay small.
"""
