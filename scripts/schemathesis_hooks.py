"""schemathesis hooks for scripts/schemathesis.sh: the runtime rules a JSON schema cannot say.

/openapi.json states every static rule (required fields, lengths, character sets, ranges,
patterns, enums) and the gateway enforces exactly those. What no schema can express is left:
instants relative to now (a backfilled `occurredAt` at most ten years old, `sendAt` within
the horizon, report windows), one field depending on another (`endsAt` after `startsAt`, a
vendor type for suppliers only, a reward's currency being its program's, tiers ascending) and
values only a parser or the server's state knows (a real e-mail address, phone number, time
zone, ISO 4217 code, a reachable webhook host, a configured template, a page token it issued). For *positive* cases only, these hooks put such fields into their
valid range, so "valid data must be accepted" tests the rest of the request. Negative cases
are sent exactly as generated.
"""

from datetime import datetime, timedelta, timezone

import schemathesis

NOW = datetime.now(timezone.utc)


def rfc3339(at):
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def _is_positive(case):
    meta = case.meta
    return meta is None or meta.generation.mode.is_positive


def _fix_kind_and_vendor(obj, kind_field):
    # A vendor type applies to suppliers only.
    if isinstance(obj, dict) and "vendorType" in obj and obj.get(kind_field) != "SUPPLIER":
        obj[kind_field] = "SUPPLIER"


def _fix_invitation(item):
    if not isinstance(item, dict):
        return
    _fix_kind_and_vendor(item, "referrerKind")
    item.pop("templateId", None)  # templates are invite-svc's configuration
    recipient = item.get("recipient")
    if not isinstance(recipient, dict):
        recipient = {}
        item["recipient"] = recipient
    recipient["email"] = "guest@example.com"
    recipient["phone"] = "+447700900123"
    recipient["timezone"] = "Europe/London"
    if "weddingDate" in item:
        item["weddingDate"] = "2027-06-12"
    if "sendAt" in item:
        item["sendAt"] = rfc3339(NOW + timedelta(days=3))
    if "occurredAt" in item:
        item["occurredAt"] = rfc3339(NOW - timedelta(days=3))


def _fix_program(program):
    if not isinstance(program, dict):
        return
    program.pop("id", None)  # the path names the program
    currency = "GBP"
    program["currency"] = currency
    milestones = program.get("milestones")
    if isinstance(milestones, list):
        for at, m in enumerate(milestones, start=1):
            if isinstance(m, dict):
                m["at"] = at  # tiers ascend
                m.pop("badge", None)  # badges ascend with them
                if isinstance(m.get("reward"), dict):
                    m["reward"]["currency"] = currency
    for path in (("conversionReward", "cap"), ("refereeReward",)):
        target = program
        for key in path:
            target = target.get(key) if isinstance(target, dict) else None
        if isinstance(target, dict):
            target["currency"] = currency
    # Expiry comes after the hold.
    for key in ("holdPeriod", "expiryPeriod"):
        program.pop(key, None)
    program["holdDays"] = 14
    program["expiryDays"] = 365


FIXERS = {}


def fixes(method, path):
    def register(f):
        FIXERS[(method, path)] = f
        return f

    return register


@fixes("POST", "/v1/referral-codes")
def _code(case):
    _fix_kind_and_vendor(case.body, "referrerKind")
    if "landingUrl" in case.body:
        case.body["landingUrl"] = "https://example.com/join"  # DEFAULT_LANDING_URL's host


@fixes("POST", "/v1/invitations")
def _invitation(case):
    _fix_invitation(case.body)


@fixes("POST", "/v1/invitations:batchCreate")
def _batch(case):
    _fix_kind_and_vendor(case.body, "referrerKind")
    for item in case.body.get("invitations") or []:
        _fix_invitation(item)


@fixes("POST", "/v1/clicks")
def _click(case):
    if "occurredAt" in case.body:
        case.body["occurredAt"] = rfc3339(NOW - timedelta(days=1))


@fixes("POST", "/v1/signups")
def _signup(case):
    _fix_kind_and_vendor(case.body, "userKind")
    if "email" in case.body:
        case.body["email"] = "new.couple@example.com"
    if "occurredAt" in case.body:
        case.body["occurredAt"] = rfc3339(NOW - timedelta(days=1))


@fixes("POST", "/v1/conversions")
def _conversion(case):
    if isinstance(case.body.get("value"), dict):
        case.body["value"]["currency"] = "GBP"
    if "occurredAt" in case.body:
        case.body["occurredAt"] = rfc3339(NOW - timedelta(days=1))


@fixes("PUT", "/v1/reward-programs/{id}")
def _program(case):
    _fix_program(case.body)


@fixes("POST", "/v1/reward-programs/{id}:simulate")
def _simulation(case):
    _fix_program(case.body.get("program"))


@fixes("POST", "/v1/campaigns")
def _campaign(case):
    case.body["startsAt"] = rfc3339(NOW - timedelta(days=1))
    case.body["endsAt"] = rfc3339(NOW + timedelta(days=30))
    if isinstance(case.body.get("budgetCap"), dict):
        case.body["budgetCap"]["currency"] = "GBP"


@fixes("POST", "/v1/webhook-endpoints")
def _endpoint(case):
    # A host the mesh's SSRF policy lets through (loopback); port 9 discards.
    case.body["url"] = "http://127.0.0.1:9/schemathesis"


def _fx_rate_filter(case):
    # The filter is a real ISO 4217 code when given (the document says three capitals).
    if isinstance(case.query, dict) and case.query.get("currency"):
        case.query["currency"] = "EUR"


def _suppression_search(case):
    # A search names one real address (only a parser knows one): a valid e-mail or an E.164
    # phone, never both.
    if isinstance(case.query, dict):
        if case.query.get("email"):
            case.query["email"] = "guest@example.com"
            case.query.pop("phone", None)
        elif case.query.get("phone"):
            case.query["phone"] = "+447700900123"


@fixes("PUT", "/v1/fx-rates")
def _fx_rate(case):
    # A real ISO 4217 code other than the reporting currency (GBP), and a real calendar day
    # in the years the service keeps (1970..2100).
    case.body["currency"] = "EUR"
    if "effectiveFrom" in case.body:
        case.body["effectiveFrom"] = "2026-12-01"


def _fix_window(values, lo="from", hi="to"):
    # Report windows: from before to, at most ten years long.
    if not isinstance(values, dict):
        return
    if lo in values:
        values[lo] = rfc3339(NOW - timedelta(days=30))
    if hi in values:
        values[hi] = rfc3339(NOW)


@schemathesis.hook
def map_case(context, case):
    if not _is_positive(case):
        return case
    if isinstance(case.body, dict):
        fixer = FIXERS.get((case.operation.method.upper(), case.operation.path))
        if fixer is not None:
            fixer(case)
        _fix_window(case.body)
    _fix_window(case.query)
    _fix_window(case.query, "since", "until")
    if (case.operation.method.upper(), case.operation.path) == ("GET", "/v1/fx-rates"):
        _fx_rate_filter(case)
    if (case.operation.method.upper(), case.operation.path) == ("GET", "/v1/suppressions"):
        _suppression_search(case)
    if isinstance(case.query, dict):
        # Page tokens are opaque: only one the server issued (`nextPageToken`) is valid.
        case.query.pop("pageToken", None)
    return case
