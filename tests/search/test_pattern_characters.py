"""A search value is never a pattern: LIKE/GLOB wildcards (``%``, ``_``, ``*``, ``?``, ``[``)
and regular-expression characters (``.*``, ``^``, ``$``, ``|``, ``\\``, ``(``) in a string
(default starts-with, ``:exact``, ``:contains``), ``uri:below`` or ``token:text`` value match
only themselves, on every engine (SQLite compares key ranges and ``instr``, MongoDB's
``$regex`` gets the value through ``re.escape``)."""

from __future__ import annotations

import httpx

from tests.search.data import search_ids, store
from tests.search.expect import any_string, get, select

FAMILIES = ["100%", "10050", "100x", "a_b", "axb", "a.*b", "aXYZb", "ab", "back\\slash",
            "backslash", "[abc]", "a", "^start", "start", "end$", "end", "x|y", "x", "y",
            "(paren)", "paren", "a*", "a?", "aa", "%", "_", "?", "*"]
PATIENTS = {"Patient": {f"p{n}": {"resourceType": "Patient", "id": f"p{n}",
                                  "name": [{"family": family}]}
                        for n, family in enumerate(FAMILIES)}}
# Values as a client means them; FHIR escapes '\\' and ',' in search values with '\\'.
QUERIES = ["%", "_", ".*", "a.*", "a_", "100%", "a*", "a?", "*", "?", "[abc]", "[", "^", "^start",
           "$", "end$", "|", "x|y", "\\", "back\\", "(", "(paren)", "a.*b"]


def fhir_escaped(value: str) -> str:
    return value.replace("\\", "\\\\").replace(",", "\\,")


async def test_string_values_match_only_themselves(client: httpx.AsyncClient) -> None:
    await store(client, PATIENTS)
    pats = PATIENTS["Patient"]
    for modifier in (None, "exact", "contains"):
        param = "family" if modifier is None else f"family:{modifier}"
        for query in QUERIES:
            expected = select(pats, lambda p, q=query, m=modifier: any_string(
                get(p, "name.family"), q, m))
            got = await search_ids(client, "Patient", {param: fhir_escaped(query)})
            assert got == expected, (param, query)
    # the premises: a wildcard or pattern reading would have matched more
    assert select(pats, lambda p: any_string(get(p, "name.family"), "%", "contains")) == \
        {"p0", "p24"}
    assert select(pats, lambda p: any_string(get(p, "name.family"), ".*", "contains")) == {"p5"}
    assert select(pats, lambda p: any_string(get(p, "name.family"), "a_", None)) == {"p3"}


URLS = ["http://example.org/a%b/1", "http://example.org/axb/2", "http://example.org/a.b/3",
        "http://example.org/a_b/4", "http://example.org/a*b/5", "http://example.org/a/6"]


async def test_uri_below_and_token_text_match_only_themselves(client: httpx.AsyncClient) -> None:
    value_sets = {f"u{n}": {"resourceType": "ValueSet", "id": f"u{n}", "url": url,
                            "status": "active"} for n, url in enumerate(URLS)}
    texts = ["50% dose", "50x dose", "5.0 dose", "5_0 dose", "500 dose"]
    observations = {f"o{n}": {"resourceType": "Observation", "id": f"o{n}", "status": "final",
                              "code": {"text": text}} for n, text in enumerate(texts)}
    await store(client, {"ValueSet": value_sets, "Observation": observations})
    for below in ("http://example.org/a%", "http://example.org/a.", "http://example.org/a_",
                  "http://example.org/a*", "http://example.org/a.*"):
        expected = {id_ for id_, vs in value_sets.items() if vs["url"].startswith(below)}
        assert await search_ids(client, "ValueSet", {"url:below": below}) == expected, below
    for text in ("50%", "5.", "5_", "5.*", "5%"):
        expected = {id_ for id_, o in observations.items()
                    if o["code"]["text"].casefold().startswith(text.casefold())}
        assert await search_ids(client, "Observation", {"code:text": text}) == expected, text
    # the premises
    assert {vs["url"] for vs in value_sets.values() if vs["url"].startswith(
        "http://example.org/a.")} == {URLS[2]}
    assert [t for t in texts if t.startswith("5.")] == ["5.0 dose"]
