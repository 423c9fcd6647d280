"""The payer's room: this server answering eligibility requests and adjudicating claims for
the Coverages it holds (``members``, ``eligibility``, ``adjudication``, ``claims``)."""
