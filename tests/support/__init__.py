"""What the tests share beyond fixtures: the store and its clients (``store``), server
processes (``server_process``), terminology content (``terminology``). Test modules import
these; no test module imports a conftest."""
