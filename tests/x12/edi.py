"""X12 the test clearinghouse writes (271, 277CA, 835), by hand from the segments' rules,
independent of the server's writer; each is validated with pyx12 where it has the map."""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

import pyx12.params
import pyx12.x12file
import pyx12.x12n_document


def pyx12_check(text: str) -> tuple[bool, str]:
    """(valid, the 999 pyx12 writes) for an interchange whose map pyx12 has."""
    ack = io.StringIO()
    ok = pyx12.x12n_document.x12n_document(pyx12.params.params(), io.StringIO(text), ack, None)
    return ok, ack.getvalue()


def envelope_errors(text: str) -> list[str]:
    """pyx12's reader's envelope checks (control numbers, counts): for the 270, whose 5010
    map pyx12 does not ship."""
    reader = pyx12.x12file.X12Reader(io.StringIO(text))
    errors = []
    for _ in reader:
        errors += [e[1] for e in reader.pop_errors()]
    reader.cleanup()
    return errors + [e[1] for e in reader.pop_errors()]


def elements(text: str) -> list[list[str]]:
    """The segments of an interchange (delimiters * : ~ as this suite uses)."""
    return [s.strip().split("*") for s in text.split("~") if s.strip()]


def wrap(set_id: str, functional: str, version: str, body: list[str], *, sender: str,
         receiver: str, control: int, on: date) -> str:
    ymd, hm = on.strftime("%Y%m%d"), "1200"
    isa = (f"ISA*00*{'':10}*00*{'':10}*ZZ*{sender:<15}*ZZ*{receiver:<15}*{ymd[2:]}*{hm}*^*00501*"
           f"{control:09d}*0*T*:")
    st = f"{control:04d}"
    segments = [isa, f"GS*{functional}*{sender}*{receiver}*{ymd}*{hm}*{control}*X*{version}",
                # The 835 guide does not use ST03 (pyx12's map says so too).
                f"ST*{set_id}*{st}" + ("" if set_id == "835" else f"*{version}"), *body,
                f"SE*{len(body) + 2}*{st}",
                f"GE*1*{control}", f"IEA*1*{control:09d}"]
    return "~".join(segments) + "~\n"


def money(value: Decimal) -> str:
    text = f"{value:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


@dataclass(frozen=True)
class Line:
    code: str  # CPT
    charge: Decimal
    paid: Decimal
    line: str  # REF*6R
    patient_part: Decimal = Decimal(0)  # CAS*PR*3 (copay)
    prior: Decimal = Decimal(0)  # CAS*OA*23 (the earlier payers' part, in a later payer's 835)
    denied: tuple[str, str] | None = None  # (group, CARC): the rest of the charge, denied
    remarks: tuple[str, ...] = ()  # LQ*HE remark codes (RARC)


def remittance_835(*, claim_id: str, lines: list[Line], payer_id: str, payer_tax: str,
                   payee_npi: str, trace: str, member: str, on: date, control: int,
                   sender: str = "CH01", receiver: str = "CLINIC01") -> str:
    return remittance_835_claims(
        claims=[Paid(claim_id, lines, payer_claim=f"PCN{trace}")], payer_id=payer_id,
        payer_tax=payer_tax, payee_npi=payee_npi, trace=trace, member=member, on=on,
        control=control, sender=sender, receiver=receiver)


@dataclass(frozen=True)
class Paid:
    """One claim payment (CLP loop): CLP04 the lines' payments unless ``claim_paid`` says
    otherwise (a claim that does not balance)."""

    claim_id: str
    lines: list[Line]
    payer_claim: str
    claim_paid: Decimal | None = None
    status: str = "1"  # CLP02: 1 processed as primary, 22 reversal of previous payment

    @property
    def charge(self) -> Decimal:
        return sum((ln.charge for ln in self.lines), Decimal(0))

    @property
    def paid(self) -> Decimal:
        if self.claim_paid is not None:
            return self.claim_paid
        return sum((ln.paid for ln in self.lines), Decimal(0))


def remittance_835_claims(*, claims: list[Paid], payer_id: str, payer_tax: str,
                          payee_npi: str, trace: str, member: str, on: date, control: int,
                          sender: str = "CH01", receiver: str = "CLINIC01") -> str:
    """An 835 paying ``claims`` by one EFT; BPR02 is the sum of their CLP04s."""
    total = sum((c.paid for c in claims), Decimal(0))
    ymd = on.strftime("%Y%m%d")
    body = [f"BPR*I*{money(total)}*C*ACH*CCP*01*999999999*DA*123456*1{payer_tax}**01*888888888*"
            f"DA*654321*{ymd}",
            f"TRN*1*{trace}*1{payer_tax}",
            f"DTM*405*{ymd}",
            "N1*PR*ACME HEALTH", "N3*1 PAYER WAY", "N4*HARTFORD*CT*06101",
            f"REF*2U*{payer_id}", "PER*BL*EDI SUPPORT*TE*8005550100",
            f"N1*PE*SPRINGFIELD CLINIC*XX*{payee_npi}",
            "LX*1"]
    for claim in claims:
        patient = sum((ln.patient_part for ln in claim.lines), Decimal(0))
        body += [f"CLP*{claim.claim_id}*{claim.status}*{money(claim.charge)}*{money(claim.paid)}*"
                 f"{money(patient)}*12*{claim.payer_claim}",
                 f"NM1*QC*1*CHALMERS*PETER****MI*{member}",
                 f"DTM*232*{ymd}"]
        for ln in claim.lines:
            body += [f"SVC*HC:{ln.code}*{money(ln.charge)}*{money(ln.paid)}**1",
                     f"DTM*472*{ymd}"]
            if ln.patient_part:
                body.append(f"CAS*PR*3*{money(ln.patient_part)}")
            if ln.prior:
                body.append(f"CAS*OA*23*{money(ln.prior)}")
            if ln.denied:
                rest = ln.charge - ln.paid - ln.patient_part - ln.prior
                body.append(f"CAS*{ln.denied[0]}*{ln.denied[1]}*{money(rest)}")
            body += [f"REF*6R*{ln.line}", f"AMT*B6*{money(ln.charge)}",
                     *(f"LQ*HE*{code}" for code in ln.remarks)]
    return wrap("835", "HP", "005010X221A1", body, sender=sender, receiver=receiver,
                control=control, on=on)


def claim_ack_277(*, claims: list[tuple[str, str, Decimal, str]], provider_npi: str,
                  on: date, control: int, sender: str = "CH01",
                  receiver: str = "CLINIC01") -> str:
    """A 277CA: per claim (CLM01, member id, charge, STC01 such as A2:20 or A7:21:IL)."""
    ymd = on.strftime("%Y%m%d")
    accepted = [c for c in claims if c[3].startswith(("A1", "A2"))]
    total = sum((c[2] for c in claims), Decimal(0))
    body = ["BHT*0085*08*277CA1*" + ymd + "*1200*TH",
            "HL*1**20*1", "NM1*AY*2*TEST CLEARINGHOUSE*****46*CH01",
            f"TRN*1*{control}", f"DTP*050*D8*{ymd}", f"DTP*009*D8*{ymd}",
            "HL*2*1*21*1", "NM1*41*2*SPRINGFIELD CLINIC*****46*CLINIC01", f"TRN*2*{control}",
            f"STC*A1:19*{ymd}*WQ*{money(total)}",
            f"QTY*90*{len(accepted)}" if accepted else f"QTY*AA*{len(claims)}",
            *([f"QTY*AA*{len(claims) - len(accepted)}"] if accepted and len(accepted)
              < len(claims) else []),
            f"AMT*YU*{money(sum((c[2] for c in accepted), Decimal(0)))}" if accepted else
            f"AMT*YY*{money(total)}",
            "HL*3*2*19*1", f"NM1*85*2*SPRINGFIELD CLINIC*****XX*{provider_npi}",
            "TRN*1*0", f"STC*A1:19**WQ*{money(total)}"]
    n = 3
    for claim_id, member, charge, status in claims:
        n += 1
        verdict = "WQ" if status.startswith(("A1", "A2")) else "U"
        body += [f"HL*{n}*3*PT", f"NM1*QC*1*CHALMERS*PETER****MI*{member}",
                 f"TRN*2*{claim_id}", f"STC*{status}*{ymd}*{verdict}*{money(charge)}",
                 f"REF*1K*PAYER{n}", f"DTP*472*D8*{ymd}"]
    return wrap("277", "HN", "005010X214", body, sender=sender, receiver=receiver,
                control=control, on=on)


def eligibility_271(inquiry: list[list[str]], *, plan: dict[str, Decimal | str] | None,
                    control: int, on: date) -> str:
    """The 271 for a 270 (its segments): benefits for a known member, else AAA 75."""
    by_id = {}
    for seg in inquiry:
        by_id.setdefault(seg[0] + (seg[1] if seg[0] in ("NM1", "HL", "TRN") else ""), seg)
    payer, provider, member = by_id["NM1PR"], by_id["NM11P"], by_id["NM1IL"]
    dmg = next(s for s in inquiry if s[0] == "DMG")
    trn = by_id["TRN1"]
    ymd = on.strftime("%Y%m%d")
    body = ["BHT*0022*11*" + str(control) + "*" + ymd + "*1200",
            "HL*1**20*1", "*".join(payer), "HL*2*1*21*1", "*".join(provider),
            "HL*3*2*22*0", f"TRN*2*{trn[2]}*{trn[3]}", "*".join(member[:10])]
    if plan is None:
        body += ["AAA*N**75*C", "*".join(dmg)]
    else:
        body += ["*".join(dmg), f"DTP*346*D8*{on.year}0101",
                 f"EB*1*IND*30**{plan['name']}",
                 # EB07 amount, EB08 percent, EB12 in plan network.
                 f"EB*B*IND*98***27*{money(Decimal(plan['copay']))}*****Y",
                 f"EB*C*IND*30***23*{money(Decimal(plan['deductible']))}*****Y",
                 f"EB*A*IND*30*****{plan['coinsurance']}****Y",
                 f"EB*G*IND*30***23*{money(Decimal(plan['out_of_pocket']))}*****Y"]
    return wrap("271", "HB", "005010X279A1", body, sender="CH01", receiver="CLINIC01",
                control=control, on=on)


def claim_status_277(inquiry: list[list[str]], *, status: str, control: int, on: date,
                     sender: str = "CH01", receiver: str = "CLINIC01") -> str:
    """The 277 (005010X212) answering a 276 (its segments) with STC01 ``status`` (such as
    P1:20 pending, F2:85 denied) for the claim it asks about."""
    def first(segment_id: str, qualifier: str) -> list[str]:
        return next(s for s in inquiry if s[0] == segment_id and s[1] == qualifier)

    payer, receiver_name, provider = first("NM1", "PR"), first("NM1", "41"), first("NM1", "1P")
    member, trace = first("NM1", "IL"), first("TRN", "1")
    charge = first("AMT", "T3")[2]
    served = first("DTP", "472")
    ymd = on.strftime("%Y%m%d")
    body = [f"BHT*0010*08*{control}*{ymd}*1200*DG",
            "HL*1**20*1", "*".join(payer), "HL*2*1*21*1", "*".join(receiver_name),
            "HL*3*2*19*1", "*".join(provider), "HL*4*3*22*0", "*".join(member[:10]),
            f"TRN*2*{trace[2]}", f"STC*{status}*{ymd}**{charge}*0",
            f"REF*1K*PCN{control}", f"REF*EJ*{trace[2]}", "*".join(served)]
    return wrap("277", "HN", "005010X212", body, sender=sender, receiver=receiver,
                control=control, on=on)
