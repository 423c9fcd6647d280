"""``params_read``: a query of one resource judged on the values of the parameters it
reads only (what a Subscription's judge extracts) agrees with the judgement on every value.

The parity suite's generated data set and queries (``parity_data.py``,
``parity_queries.py``); no database. The queries that reach beyond the resource (chains,
``_has``, code sets) name no parameters, and are judged on every value.
"""

from __future__ import annotations

from fhir_server.search.compile import CompileContext, compile_criteria
from fhir_server.search.evaluate import evaluate
from fhir_server.search.extract import index_resource
from fhir_server.search.parse import criteria_of
from fhir_server.search.query import params_read
from tests.search.parity_data import BASE, generate
from tests.search.parity_queries import parity_queries


def test_the_values_of_the_parameters_read_judge_as_all_values_do() -> None:
    data = generate()
    narrowed = disagreements = 0
    for q in parity_queries(data, 600):
        query = compile_criteria(CompileContext(base_url=BASE), q.type_,
                                 criteria_of(list(q.params)), record=False)
        reads = params_read(query)
        if reads is None:
            continue
        narrowed += 1
        assert reads <= {code for code, _ in q.params} | {
            name.split(":")[0] for name, _ in q.params}, (str(q), reads)
        for id_, resource in data.resources[q.type_].items():
            ts = data.stored_at[q.type_][id_]
            full = evaluate(query, id_=id_, index=data.index[q.type_][id_], ts=ts)
            only = evaluate(query, id_=id_, ts=ts,
                            index=index_resource(resource, base_url=BASE, only=reads))
            disagreements += full != only
            assert full == only, f"{q} on {q.type_}/{id_}: {full} with every value"
    assert narrowed >= 300, narrowed  # most generated queries stay within the resource
    assert disagreements == 0
