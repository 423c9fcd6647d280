"""Storage: the only package that imports pymongo or sqlite3 and knows a stored document's shape.

``repository.py`` is the interface every caller uses; ``open.py`` picks the engine
(``sqlite/``, the embedded default, or ``mongo/``, MongoDB, with FerretDB standing in
for it in tests). It imports the query model (``fhir_server.search``) and ``core``,
nothing above; code above this package works through the interface only.
"""
