"""Sending one notice to its patient on every channel, once, and recording it.

For each channel that is on (``channels.py``), in order:

1. the notice's ``Communication`` for the channel is looked up by its id, derived from
   (the notice's key, the channel): one found means it was sent (or given up) already, and
   nothing more is done: an event delivered twice, or again after a restart, sends once;
2. a channel the patient opted out of (``consent.py``), or on which the patient has no
   valid address (``addresses.py``), sends nothing and records nothing;
3. the message is rendered (``templates.py``) and sent, with up to FHIR_NOTIFY_ATTEMPTS
   attempts while the failure may pass by itself, pausing FHIR_NOTIFY_BACKOFF seconds
   doubled at each attempt (full jitter);
4. the Communication is written: ``completed`` when the channel took the message, else
   ``not-done`` with ``statusReason`` saying why (the kind of fault, no health data) and a
   worklist Task ``notify-patient`` about it (``operations/worklist.py``).

Sending comes before recording, so a process killed between the two (SIGKILL, a power
cut) sends that message again when the notice is handed again: at least once, never lost.

A notify-patient Task set to ``requested`` (``resend``) sends its not-done Communication's
message again on that channel, the notice rebuilt from what the Communication is about as
it now is (``messages.resent_notice``): the Communication is updated (``completed``, or
``not-done`` with the new reason) and the Task completed or failed again with it.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import jinja2

from fhir_server.core.config import Settings
from fhir_server.core.errors import Upstream
from fhir_server.core.fhirjson import loads_stored
from fhir_server.notifications.addresses import address, language
from fhir_server.notifications.channels import Channel, ChannelFailed, Outgoing
from fhir_server.notifications.consent import opted_out
from fhir_server.notifications.messages import CATEGORY, Notice, resent_notice
from fhir_server.notifications.templates import Rendered, Templates
from fhir_server.operations.common import commit_new, now_instant
from fhir_server.operations.worklist import Failure, complete_task, fail_task, open_task
from fhir_server.revenue.records import LOCAL_REF
from fhir_server.revenue.states import TaskStatus, task_status, worklist_codes
from fhir_server.storage.repository import Repository

log = logging.getLogger("fhir_server.notifications")
STEP = "notify-patient"
NOTIFICATION = "urn:fhir-rcm-server:notification"  # Communication.identifier: key|channel
NOTICE = "urn:fhir-rcm-server:notice"  # Communication.identifier: the event or reminder key
NAMESPACE = uuid.UUID("9b8f3c2e-0d4a-4e57-8a31-6c2f0e9d4b17")
MEDIUM = "http://terminology.hl7.org/CodeSystem/v3-ParticipationMode"
MEDIUM_CODES = {"email": ("EMAILWRIT", "email"), "sms": ("SMSWRIT", "SMS message")}
MAX_PAUSE = 300.0
OPTED_OUT, NO_ADDRESS = "opted-out", "no-address"  # why a channel is skipped, as logged
Resource = dict[str, Any]


@dataclass
class Prepared:
    """A notice ready to go out (``Delivery._prepare``): each channel's address (``to``) or
    why it is skipped (``skipped``: OPTED_OUT, NO_ADDRESS), and the rendered message, or
    why it could not be rendered (a reason for the not-done Communication)."""

    to: dict[str, str]
    skipped: dict[str, str]
    message: Rendered | str


def communication_id(key: str, channel: str) -> str:
    return str(uuid.uuid5(NAMESPACE, f"{key}|{channel}"))


class Delivery:
    def __init__(self, *, repo: Repository, settings: Settings,
                 channels: list[Channel]) -> None:
        self.repo, self.settings, self.channels = repo, settings, channels
        self.templates = Templates(settings.fhir_notify_templates)

    async def notify(self, notice: Notice) -> None:
        """Send ``notice`` on each channel not sent on yet (failures of the database
        raise: the caller hands the notice again later)."""
        waiting = [c for c in self.channels if not await self._recorded(notice, c.name)]
        if not waiting:
            return
        prepared = await self._prepare(notice, waiting)
        if prepared is None:
            log.info("notification skipped key=%s reason=no-patient", notice.key)
            return
        for channel in waiting:
            if channel.name in prepared.skipped:
                log.info("notification skipped key=%s channel=%s reason=%s",
                         notice.key, channel.name, prepared.skipped[channel.name])
                continue
            rendered = prepared.message
            reason = rendered if isinstance(rendered, str) else await self._send(
                channel, notice, prepared.to[channel.name], rendered)
            await self._record(notice, channel.name, reason)

    async def _prepare(self, notice: Notice, channels: list[Channel]) -> Prepared | None:
        """What ``notice`` needs to go out on ``channels``: the patient's address on each, or
        why none (opted out, no valid address), and the message rendered in the patient's
        language; None when the patient is not stored."""
        stored = await self.repo.current(type_="Patient", id_=notice.patient.split("/", 1)[1])
        if stored is None or stored.text is None:
            return None
        patient = loads_stored(stored.text)
        now = datetime.now(UTC)
        denied = await opted_out(repo=self.repo, settings=self.settings,
                                 patient=notice.patient, now=now)
        prepared = Prepared(to={}, skipped={}, message="")
        for channel in channels:
            to = None if channel.name in denied else address(patient, channel.name, now=now)
            if channel.name in denied:
                prepared.skipped[channel.name] = OPTED_OUT
            elif to is None or not channel.valid(to):
                prepared.skipped[channel.name] = NO_ADDRESS
            else:
                prepared.to[channel.name] = to
        try:
            prepared.message = self.templates.render(
                language=language(patient), kind=notice.kind, values=notice.values)
        except jinja2.TemplateError as error:
            prepared.message = (f"the notification template {notice.kind} could not be "
                                f"rendered ({type(error).__name__})")
        return prepared

    async def _recorded(self, notice: Notice, channel: str) -> bool:
        found = await self.repo.current(type_="Communication",
                                        id_=communication_id(notice.key, channel))
        return found is not None and not found.deleted

    async def _send(self, channel: Channel, notice: Notice, to: str,
                    rendered: Rendered) -> str | None:
        """None when the channel took the message, else why it did not."""
        text = rendered.sms if channel.name == "sms" else rendered.email
        message = Outgoing(to=to, subject=rendered.subject, text=text,
                           key=f"{notice.key}|{channel.name}")
        attempts = self.settings.fhir_notify_attempts
        for attempt in range(1, attempts + 1):
            try:
                await channel.send(message)
                return None
            except ChannelFailed as failed:
                log.warning("notification failed key=%s channel=%s attempt=%d reason=%s",
                            notice.key, channel.name, attempt, failed.reason)
                if not failed.transient or attempt == attempts:
                    return f"{failed.reason} (after {attempt} attempt(s))"
            pause = min(MAX_PAUSE, self.settings.fhir_notify_backoff * 2 ** (attempt - 1))
            await asyncio.sleep(random.uniform(0, pause))
        return "not sent"  # not reached: the loop returns

    async def _record(self, notice: Notice, channel: str, reason: str | None, *,
                      previous: int | None = None) -> None:
        """Write the Communication of (notice, channel): new, or over the not-done one
        (``previous``, its version) when resent."""
        id_ = communication_id(notice.key, channel)
        code, display = MEDIUM_CODES[channel]
        communication: Resource = {
            "resourceType": "Communication", "id": id_,
            "identifier": [{"system": NOTIFICATION, "value": f"{notice.key}|{channel}"},
                           {"system": NOTICE, "value": notice.key}],
            "status": "completed" if reason is None else "not-done",
            "category": [{"text": f"{CATEGORY}{notice.kind}"}],
            "medium": [{"coding": [{"system": MEDIUM, "code": code, "display": display}],
                        "text": channel}],
            "subject": {"reference": notice.patient},
            "recipient": [{"reference": notice.patient}],
            "about": [{"reference": notice.about}],
        }
        if reason is None:
            communication["sent"] = now_instant()
        else:
            communication["statusReason"] = {"text": reason}
        await commit_new(self.repo, self.settings, [(communication, previous)])
        if reason is None:
            log.info("notification sent key=%s channel=%s communication=%s", notice.key,
                     channel, id_)
            if previous is not None:
                await complete_task(repo=self.repo, settings=self.settings, step=STEP,
                                    focus=f"Communication/{id_}",
                                    results=[f"Communication/{id_}"])
            return
        task = await open_task(repo=self.repo, settings=self.settings, step=STEP,
                               focus=f"Communication/{id_}", patient=notice.patient,
                               failure=Failure(reason=reason, outcome=Upstream(reason).outcome()))
        log.warning("notification not done key=%s channel=%s communication=%s task=%s",
                    notice.key, channel, id_, task["id"])

    async def resend(self, task_id: str, version: int) -> None:
        """A notify-patient Task set to ``requested`` (this ``version`` of it, if still
        current): its not-done Communication's message is sent again on its channel. Sent,
        the Communication is updated to ``completed`` and the Task completed with it;
        not sent, the Communication stays ``not-done`` with the new reason and the Task is
        failed again with it. Database faults raise (the event is handed again)."""
        stored = await self.repo.current(type_="Task", id_=task_id)
        if stored is None or stored.version != version or stored.text is None:
            return
        task = loads_stored(stored.text)
        if task_status(task) is not TaskStatus.REQUESTED or STEP not in worklist_codes(task):
            return
        reason = await self._resend(task)
        if reason is not None:  # it could not even be tried: the Task says why
            await fail_task(repo=self.repo, settings=self.settings, task=task,
                            failure=Failure(reason=reason, outcome=Upstream(reason).outcome()))

    async def _resend(self, task: Resource) -> str | None:
        """Send the Task's message again; why it could not be tried, else None."""
        match = LOCAL_REF.match(str((task.get("focus") or {}).get("reference")))
        if match is None or match.group(1) != "Communication":
            return "a notify-patient Task's focus must be the not-done Communication"
        stored = await self.repo.current(type_="Communication", id_=match.group(2))
        if stored is None or stored.text is None or stored.deleted:
            return f"Communication/{match.group(2)} is no longer stored: cancel the Task"
        communication = loads_stored(stored.text)
        ids = {i.get("system"): i.get("value") for i in communication.get("identifier") or []}
        medium = next((m.get("text") for m in communication.get("medium") or []), None)
        channel = next((c for c in self.channels if c.name == medium), None)
        kind = next((str(c.get("text"))[len(CATEGORY):]
                     for c in communication.get("category") or []
                     if str(c.get("text", "")).startswith(CATEGORY)), "")
        about = next((str(a.get("reference")) for a in communication.get("about") or []), "")
        if communication.get("status") == "completed":
            await complete_task(repo=self.repo, settings=self.settings, step=STEP,
                                focus=f"Communication/{communication['id']}",
                                results=[f"Communication/{communication['id']}"])
            return None
        if channel is None:
            return f"the {str(medium)[:16]} channel is not configured on this server"
        notice = None if not isinstance(ids.get(NOTICE), str) else await resent_notice(
            self.repo, self.settings, key=str(ids[NOTICE]), kind=kind, about=about)
        if notice is None:
            return f"{about[:80]} no longer tells its patient of this: cancel the Task"
        prepared = await self._prepare(notice, [channel])
        if prepared is None:
            return "the patient is no longer stored: cancel the Task"
        if prepared.skipped.get(channel.name) == OPTED_OUT:
            return f"the patient opted out of {channel.name}: cancel the Task"
        if prepared.skipped.get(channel.name) == NO_ADDRESS:
            return f"the patient has no valid {channel.name} address: add one, then retry"
        if isinstance(prepared.message, str):
            return prepared.message
        reason = await self._send(channel, notice, prepared.to[channel.name],
                                  prepared.message)
        await self._record(notice, channel.name, reason, previous=stored.version)
        return None
