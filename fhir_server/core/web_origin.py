"""Web origins (RFC 6454): ``scheme://host[:port]``, as a browser sends them in ``Origin``.

Pure functions with no dependencies, shared by the settings (``FHIR_CORS_ORIGINS``), the
client registry (a client's origins) and the CORS middleware, so that an origin is
written, compared and refused by one rule.
"""

from __future__ import annotations

from urllib.parse import urlsplit

WEB_SCHEMES = {"http": 80, "https": 443}


def origin_of(url: str) -> str | None:
    """The origin of an http(s) URL, serialised as a browser does (lower-case scheme and
    host, default port left out); None for other schemes (``com.example.app:/cb``) and for
    what is not a URL with a host."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = parts.hostname
    if scheme not in WEB_SCHEMES or not host:
        return None
    if ":" in host:  # IPv6: brackets come back
        host = f"[{host}]"
    return f"{scheme}://{host}" if port in (None, WEB_SCHEMES[scheme]) else f"{scheme}://{host}:{port}"


def parse_origin(value: str) -> str:
    """An origin given by an operator (``https://app.example.org``, ``http://127.0.0.1:3000``),
    normalised; ValueError when it is not one: a path, query, fragment or user name, another
    scheme, ``*`` or ``null``."""
    text = value.strip()
    origin = origin_of(text)
    if origin is None:
        raise ValueError(f"{text[:200]!r} is not a web origin (scheme://host[:port], http or https)")
    try:
        parts = urlsplit(text)
    except ValueError:  # origin_of parsed it already
        raise ValueError(f"{text[:200]!r} is not a web origin") from None
    if parts.path not in ("", "/") or parts.query or parts.fragment or "@" in parts.netloc:
        raise ValueError(f"{text[:200]!r} is not a web origin: it must have no path, query, "
                         "fragment or user name (scheme://host[:port])")
    return origin


def parse_origin_list(value: str) -> tuple[str, ...]:
    """A comma-separated list of origins, normalised, without repeats (empty: none)."""
    return tuple(dict.fromkeys(parse_origin(item) for item in value.split(",") if item.strip()))
