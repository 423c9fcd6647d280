"""The query model, below storage: the search-parameter registry (``registry.py``,
``paths.py``), the search values extracted at write time (``extract.py``, ``normalize.py``,
``dates.py``), parsing (``parse.py``), one pure function per parameter type (``values.py``),
the query nodes (``query.py``) and their compilation from criteria (``compile.py``), and the
evaluation of nodes against one resource's values in Python (``evaluate.py``). The storage
engines compile the nodes to their dialects; the search service that runs searches against a
repository is ``fhir_server.service.search``, above storage."""
