"""FHIR R4 Subscriptions delivered from the outbox.

``criteria.py`` reads a Subscription's ``criteria`` with the server's own search parser and
judges a version against it with the query model's evaluator (no second matcher);
``channel.py`` reads and checks the rest-hook channel (https, the allow-list); ``rule.py``
checks a Subscription when a client writes it and records who wrote it; ``state.py``
keeps, per Subscription, its owner, secret and durable cursor; ``notify.py`` sends one
signed notification through the guarded HTTP client; ``worker.py`` delivers one
Subscription's notifications in event-number order; ``consumer.py`` is the one consumer
of the outbox that hands matching events to each Subscription's worker.
"""
