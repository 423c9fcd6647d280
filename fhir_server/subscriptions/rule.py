"""The write rule of Subscription: what a client may write, checked before it is stored.

* ``status``: R4 says a client submits a Subscription ``requested`` or ``off`` and the
  server moves it to ``active`` (or ``error``). Like HAPI FHIR, the server stores any
  status it is given, so that Subscriptions moved between servers (``fhir-server load``)
  and R4's own examples can be stored: one written ``active`` is delivered to at once
  (no handshake: nobody requested one), one written ``error`` waits until it is set back
  to ``requested``;
* ``criteria`` must be evaluable on a single version (``criteria.py``), of a type the
  writer may read; a token confined to a patient may not name another patient in it;
* the rest-hook channel (``channel.py``): https, or an allow-listed host;
* the writer (its token's client, scopes and launch patient) is recorded beside the
  Subscription (``state.py``), never in it: notifications carry only what that writer
  may read (``consumer.py`` judges each event with the same access rules as a read);
* a ``patient/Subscription`` token changes only what its app made for its patient
  (``auth/owned.py``): checked against the recorded owner before the new one is recorded.

The Subscription's lease (``subscription:<id>``) is held from these checks to the commit,
so two clients' writes of one Subscription cannot record each other's owner.
"""

from __future__ import annotations

from fhir_server.auth.owned import owns
from fhir_server.auth.principal import Principal
from fhir_server.core.errors import Forbidden, NotFound
from fhir_server.search.query import Keys, walk
from fhir_server.service import write_rules as rules
from fhir_server.service.write_rules import Change, RuleContext, SideWrite
from fhir_server.subscriptions.active import Watch, read_watch
from fhir_server.subscriptions.channel import parse_channel
from fhir_server.subscriptions.criteria import WHERE
from fhir_server.subscriptions.state import owner_of, record_owner, state_of


class SubscriptionRule:
    def lease_names(self, change: Change) -> list[str]:
        return [f"subscription:{change.id_}"]

    async def check(self, ctx: RuleContext, change: Change) -> list[SideWrite]:
        after = change.after
        if after is None:
            return []
        watch = read_watch(after, ctx.settings)
        parse_channel(after, ctx.settings, topic_based=watch.topic is not None)
        principal = ctx.principal if isinstance(ctx.principal, Principal) else None
        if principal is not None:
            _check_reach(principal, watch)
            if change.before is not None:
                await _check_owner(ctx, principal, change.id_)
        await record_owner(ctx.repo.records, change.id_, owner_of(principal))
        return []


def _check_reach(principal: Principal, watch: Watch) -> None:
    if not principal.may(watch.type_, "r"):
        raise Forbidden(f"The access token does not permit reading {watch.type_}, which "
                        "Subscription.criteria names", expression=[WHERE])
    if principal.patient is None or not any(s.context == "patient" for s in principal.scopes):
        return
    own = f"Patient/{principal.patient}"
    nodes = [node for criteria in watch.criteria for node in walk(criteria.query)]
    for node in nodes:
        if isinstance(node, Keys) and node.kind == "rf" and any(
                "|Patient/" in k and not k.endswith(f"|{own}") for k in node.keys):
            raise Forbidden("Subscription.criteria names a patient other than the token's",
                            expression=[WHERE])


async def _check_owner(ctx: RuleContext, principal: Principal, id_: str) -> None:
    """A token whose every Subscription update is confined to its patient (``patient/``
    scopes, ``auth/owned.py``) changes only a Subscription its app made for that patient.
    The request's own checks found it so already; this one runs under the Subscription's
    lease, just before the owner is recorded, so the recorded owner cannot be taken over
    by a write that its commit then refuses."""
    terms = principal.alternatives("Subscription", "u")
    if not terms or any(t.patient is None for t in terms):
        return
    if not owns(principal, (await state_of(ctx.repo.records, id_)).get("owner")):
        raise NotFound(f"Subscription/{id_} is not known")


def register() -> None:
    """Install the rule once (create_app calls this)."""
    if not any(isinstance(r, SubscriptionRule) for r in rules.rules_for("Subscription")):
        rules.register("Subscription", SubscriptionRule())
