"""FHIR R4 Subscriptions delivered from the outbox.

``criteria.py`` reads a Subscription's ``criteria`` with the server's own search parser and
judges a version against it with the query model's evaluator (no second matcher);
``backport.py`` reads topic-based Subscriptions (the R4 Backport IG's topics, filters and
channel extensions) and ``notification.py`` builds its notification Bundles; ``active.py``
reads either kind into what it watches; ``channel.py`` reads and checks the channel
(rest-hook: https, the allow-list; websocket; email, ``email_notice.py``); ``rule.py``
checks a Subscription when a client writes it and records who wrote it; ``state.py``
keeps, per Subscription, its owner, secret and durable cursor; ``notify.py`` sends one
signed notification through the guarded HTTP client; ``worker.py`` delivers one
Subscription's notifications in event-number order; ``consumer.py`` is the one consumer
of the outbox that hands matching events to each Subscription's worker; ``sockets.py``
pings the websockets bound in each process.
"""
