"""The authorization server's HTML: login form, patient picker, error page.

Minimal on purpose; every value is escaped. Forms have no ``action``, so they
post to the URL they were served from (the authorize URL). The pending
request travels as an opaque, unguessable id (``request_id``) naming a
short-lived server-side record.
"""

from __future__ import annotations

from html import escape

from starlette.responses import HTMLResponse

PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
}
_STYLE = ("body{font-family:sans-serif;max-width:28em;margin:3em auto}"
          "label{display:block;margin:.8em 0 .2em}.error{color:#a00}")


def _page(title: str, body: str, status: int) -> HTMLResponse:
    html = (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{escape(title)}</title><style>{_STYLE}</style></head>"
            f"<body><h1>{escape(title)}</h1>{body}</body></html>")
    return HTMLResponse(html, status_code=status, headers=PAGE_HEADERS)


def login_page(*, request_id: str, client_name: str, error: str | None = None,
               status: int = 200) -> HTMLResponse:
    message = f'<p class="error" role="alert">{escape(error)}</p>' if error else ""
    body = (f"<p>Sign in to allow <strong>{escape(client_name)}</strong> to access FHIR data.</p>"
            f"{message}<form method=\"post\">"
            f"<input type=\"hidden\" name=\"request_id\" value=\"{escape(request_id)}\">"
            "<label for=\"username\">Username</label>"
            "<input id=\"username\" name=\"username\" autocomplete=\"username\" required>"
            "<label for=\"password\">Password</label>"
            "<input id=\"password\" name=\"password\" type=\"password\" "
            "autocomplete=\"current-password\" required>"
            "<p><button type=\"submit\">Sign in</button></p></form>")
    return _page("Sign in", body, status)


def picker_page(*, request_id: str, patients: list[str], error: str | None = None,
                status: int = 200) -> HTMLResponse:
    """Choose the patient: from the user's list, or by id for staff who may pick any patient."""
    message = f'<p class="error" role="alert">{escape(error)}</p>' if error else ""
    if patients:
        choices = "".join(
            f"<label><input type=\"radio\" name=\"patient\" value=\"{escape(p)}\" required> "
            f"Patient/{escape(p)}</label>" for p in patients)
    else:
        choices = ("<label for=\"patient\">Patient id</label>"
                   "<input id=\"patient\" name=\"patient\" required>")
    body = (f"<p>Which patient is this session for?</p>{message}<form method=\"post\">"
            f"<input type=\"hidden\" name=\"request_id\" value=\"{escape(request_id)}\">"
            f"{choices}<p><button type=\"submit\">Continue</button></p></form>")
    return _page("Choose a patient", body, status)


def error_page(*, error: str, description: str, status: int = 400) -> HTMLResponse:
    body = (f"<p class=\"error\"><code>{escape(error)}</code>: {escape(description)}</p>"
            "<p>The application's request cannot be answered; return to the application.</p>")
    return _page("Authorization error", body, status)
