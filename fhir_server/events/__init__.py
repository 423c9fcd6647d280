"""Change events: the outbox read in order, and the consumers that react to it.

Every committed change appends an event in the same commit (``Repository.events``, the
outbox). This room reads it: ``topics.py`` names the journey a change belongs to (an
appointment booked, a visit finished, a claim answered...), ``consumer.py`` is what reacts
(the interface the Subscriptions, the broker bridge and the workers implement), and
``runner.py`` feeds each consumer in event-number order from its durable cursor, in one
process at a time among every worker and replica, at least once.
"""
