"""Storage: the only package that imports pymongo or sqlite3 and knows a stored document's shape.

``repository.py`` is the interface every caller uses; ``open.py`` picks the engine
(``sqlite/``, the embedded default, or ``mongo/``, MongoDB, with FerretDB standing in
for it in tests). Code above this package works through the interface only.
"""
