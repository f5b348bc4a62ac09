"""Checks on a submitted body that keep bad input a 422 (never a 500) and stored inputs small.

Each raises ``BadInput`` (fal's 422 ``detail`` list). They run in the thread pool
(``request_body.prepare``), or on the event loop for a body small enough that they cannot stall
it (``request_body.INLINE_BODY_BYTES``):

- ``parse``: at most ``MAX_VALUES`` JSON values, with no ``NaN``/``Infinity`` (PostgreSQL's JSON refuses them: a 500 at insert;
  SQLite stored them and the history route broke) and no overflowing numbers (``1e999``);
  nesting deeper than ``MAX_DEPTH`` and lone surrogates anywhere (they cannot be encoded as
  UTF-8: every JSON answer that echoed them was a 500) are refused before validation;
- ``check_stored``: the validated fields that will be stored: NUL characters (PostgreSQL's JSON
  refuses them), non-finite numbers, prompt lengths (fal's Kling: 2500 characters), the length
  of other strings and of URLs, and the URLs' syntax (a URL the worker could never fetch is
  ``file_download_error`` at submit, not a failure minutes later).
"""

from __future__ import annotations

import functools
import ipaddress
import json
import math
import re

import httpx

from stillreel.errors import InputError

MAX_VALUES = 100_000  # commas, objects and arrays in a body (a Kling input has a few dozen)
MAX_DEPTH = 32  # fal's Kling inputs nest 4 deep (elements → reference_image_urls → item)
MAX_PROMPT_CHARS = 2500  # fal's Kling: "keep the prompt under 2500 characters" (kling-catalogue.md)
MAX_TEXT_CHARS = 2500  # any other string that is not a URL (voice ids, enum values …)
MAX_URL_CHARS = 8192  # an http(s) URL; data: URIs are bounded by the input file size limit
PROMPTS = {"prompt", "negative_prompt"}
_SURROGATE = re.compile("[\ud800-\udfff]")
_CONTROL = re.compile("[\x00-\x1f\x7f]")
# An http(s) URL in its plainest form: an ASCII host name or IPv4 address, an optional port, and
# printable ASCII after it. httpx accepts every one of these (tests/test_input_guards.py compares
# the verdicts), except a host that is a bad IPv4 address or holds an IDNA ("xn--") label, which
# ``_plain_url`` leaves to httpx; anything else is parsed by httpx, as before.
_PLAIN_URL = re.compile(r"https?://([A-Za-z0-9.-]+)(?::[0-9]{0,5})?(?:[/?#][!-~]*)?", re.ASCII)
_DOTTED_QUAD = re.compile(r"[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+", re.ASCII)
_ECHO_CHARS = 200  # longest ``input`` echoed back in a 422 item


class BadInput(InputError):
    """A body refused before its endpoint's schema ran (fal's 422 ``detail`` list)."""


def _bad(loc, msg: str, type: str, **ctx) -> BadInput:
    item = {"loc": ["body", *(safe_text(p) if isinstance(p, str) else p for p in loc)], "msg": msg, "type": type}
    if ctx:
        item["ctx"] = ctx
    return BadInput([item])


def safe_text(text: str, limit: int | None = None) -> str:
    """``text`` made encodable (lone surrogates escaped) and cut to ``limit`` characters."""
    if limit is not None and len(text) > limit:
        text = text[:limit] + "…"
    if _SURROGATE.search(text):
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def safe_detail(detail):
    """A 422 ``detail`` that can always be sent: echoed inputs cut short and made encodable."""
    if not isinstance(detail, list):
        return safe_text(detail) if isinstance(detail, str) else detail
    out = []
    for item in detail:
        item = dict(item)
        if isinstance(item.get("input"), str):
            item["input"] = safe_text(item["input"], _ECHO_CHARS)
        elif "input" in item and not isinstance(item["input"], (int, float, bool, type(None))):
            item.pop("input")
        if isinstance(item.get("msg"), str):
            item["msg"] = safe_text(item["msg"], 1000)
        item["loc"] = [safe_text(p, _ECHO_CHARS) if isinstance(p, str) else p for p in item.get("loc", [])]
        out.append(item)
    return out


def _constant(name: str):
    raise ValueError(f"{name} is not valid JSON (numbers must be finite)")


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:40]} is out of range")
    return value


def parse(body: bytes) -> object:
    """The JSON body, or ``BadInput`` (``json_invalid``)."""
    if not body.strip():
        return {}
    # json.loads holds the GIL for the whole parse: millions of tiny values (15 MB of ``[{}]``)
    # would stall the event loop from the thread pool too. Counting bytes is quick (base64 data
    # URIs, the one large thing a body holds, have no commas or brackets).
    values = body.count(b",") + body.count(b"{") + body.count(b"[")
    if values > MAX_VALUES:
        raise _bad((), f"the body holds more than {MAX_VALUES} JSON values", "json_invalid")
    try:
        payload = json.loads(body, parse_constant=_constant, parse_float=_float)
    except RecursionError:
        raise _bad((), f"the body nests deeper than {MAX_DEPTH} levels", "json_invalid") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise _bad((), f"the body is not valid JSON: {safe_text(str(exc), 300)}", "json_invalid") from None
    _walk(payload)
    return payload


def _walk(payload: object) -> None:
    """Depth and lone surrogates, everywhere (ignored fields too: their keys and values are
    echoed in 422 items), iteratively: the depth check must not itself recurse."""
    stack = [(payload, (), 0)]
    while stack:
        value, loc, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise _bad(loc[:MAX_DEPTH], f"the body nests deeper than {MAX_DEPTH} levels", "json_invalid")
        if isinstance(value, str):
            if _SURROGATE.search(value):
                raise _bad(loc, "the string holds a lone surrogate (not valid Unicode)", "string_unicode")
        elif isinstance(value, dict):
            for key, item in value.items():
                if _SURROGATE.search(key):
                    raise _bad(loc, "a key holds a lone surrogate (not valid Unicode)", "string_unicode")
                stack.append((item, (*loc, key), depth + 1))
        elif isinstance(value, list):
            stack.extend((item, (*loc, i), depth + 1) for i, item in enumerate(value))


def is_url_field(key) -> bool:
    return isinstance(key, str) and (key.endswith("_url") or key.endswith("_urls"))


def check_stored(payload: dict, max_data_uri_bytes: int) -> None:
    """The validated fields about to be stored (``model_dump``): see the module doc."""
    stack = [(payload, (), False)]
    while stack:
        value, loc, url_field = stack.pop()
        if isinstance(value, dict):
            stack.extend((v, (*loc, k), is_url_field(k)) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((v, (*loc, i), url_field) for i, v in enumerate(value))
        elif isinstance(value, float) and not math.isfinite(value):
            raise _bad(loc, "Input should be a finite number", "finite_number")
        elif isinstance(value, str):
            _check_string(value, loc, url_field, max_data_uri_bytes)


def _check_string(value: str, loc: tuple, url_field: bool, max_data_uri_bytes: int) -> None:
    name = next((p for p in reversed(loc) if isinstance(p, str)), "")
    if url_field:
        if value[:5].lower() == "data:":
            # base64 is 4 characters for 3 bytes; refused before anything is decoded.
            if (len(value) - value.find(",") - 1) * 3 // 4 > max_data_uri_bytes:
                raise _bad(loc, f"the file is larger than {max_data_uri_bytes} bytes", "file_too_large",
                           max_bytes=max_data_uri_bytes)
            return
        if len(value) > MAX_URL_CHARS:
            raise _bad(loc, f"the URL is longer than {MAX_URL_CHARS} characters", "file_download_error")
        _check_url(value, loc)
        return
    if "\x00" in value:
        raise _bad(loc, "the string holds a NUL character", "string_type")
    limit = MAX_PROMPT_CHARS if name in PROMPTS else MAX_TEXT_CHARS
    if len(value) > limit:
        raise _bad(loc, f"String should have at most {limit} characters", "string_too_long", max_length=limit)


def _check_url(value: str, loc: tuple) -> None:
    """Only what can never be fetched: not http(s), control characters, a host httpx refuses.
    (Private or unresolvable hosts are the fetcher's to refuse, when it runs.)"""
    text = value.strip()
    if _plain_url(text):
        return
    problem = None
    if _CONTROL.search(text):
        problem = "it holds control characters"
    else:
        try:
            url = httpx.URL(text)
            if url.scheme not in ("http", "https"):
                problem = "it must be an http(s) URL or a data URI"
            elif not url.host:
                problem = "it has no host"
        except (httpx.InvalidURL, ValueError) as exc:
            problem = safe_text(str(exc), 200)
    if problem:
        raise _bad(loc, f"the file URL cannot be downloaded: {problem}", "file_download_error")


def _plain_url(text: str) -> bool:
    """Whether ``text`` is a URL httpx certainly accepts, told without parsing it (httpx's parser
    was a fifth of a submit's time on the event loop)."""
    match = _PLAIN_URL.fullmatch(text)
    if match is None:
        return False
    host = match[1]
    if "xn--" in host.lower():
        return False
    return not _DOTTED_QUAD.fullmatch(host) or _is_ipv4(host)


@functools.lru_cache(maxsize=1024)
def _is_ipv4(host: str) -> bool:
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        return False
    return True
