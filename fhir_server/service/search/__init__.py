"""The search service, above storage: a search interaction run against a repository
(``engine.py``: sort, paging snapshots, totals), ``_include``/``_revinclude``
(``includes.py``) and the codes of value sets and hierarchies made stored sets before a
search runs (``codes.py``). The query model it runs is ``fhir_server.search``, below
storage."""
