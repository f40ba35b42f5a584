"""PII detectors for training text: e-mail addresses, phone numbers, IBANs (mod-97), payment card numbers (Luhn and
issuer prefix), national identifiers with checksums (Polish PESEL, Spanish DNI/NIE) and US SSNs (format rules).

Pure and small: ``count(text)`` returns how many of each kind a text holds. It never returns the matched text, so
no caller can leak it into a verdict, a log or a report.
"""

from __future__ import annotations

import calendar
import re
from bisect import bisect_right
from itertools import accumulate

KINDS = ("email", "phone", "iban", "card", "pesel", "dni", "ssn")

# IBAN lengths by country (SWIFT IBAN registry); an unlisted country must be 15-34 characters long.
IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29, "BY": 28,
    "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18,
    "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22,
    "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20,
    "LU": 20, "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15,
    "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24, "SC": 31, "SE": 24, "SI": 19,
    "SK": 24, "SM": 27, "ST": 25, "SV": 28, "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}

_RUN = re.compile(r"\d[\d .()/-]{5,}")  # every numeric kind holds 6+ digits and separators in a row: a prefilter
_EMAIL = re.compile(r"(?<![\w.%+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+"
                    r"[A-Za-z]{2,24}(?![\w-])")
_IBAN = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?(?![A-Za-z0-9])")
_CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")
_PESEL = re.compile(r"(?<![\d-])\d{11}(?![\d-])")
_DNI = re.compile(r"(?<![\w-])(?:\d{8}|[XYZ]\d{7})-?[A-Z](?![\w-])")
_SSN = re.compile(r"(?<![\d-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\d-])")
_PHONE = re.compile(
    r"(?<![\w+.-])(?:"
    r"\+\d{1,3}(?:[ -]?\(?\d{1,4}\)?){2,5}"  # international: +48 601 234 567, +1 (555) 123-4567
    r"|\(?\d{3}\)?[ .-]\d{3}[ .-]\d{4}"  # NANP: (555) 123-4567, 555.123.4567
    r"|[4-8]\d{2}[ -]\d{3}[ -]\d{3}"  # PL mobile: 601 234 567
    r"|\d{2}[ -]\d{3}[ -]\d{2}[ -]\d{2}"  # PL landline: 22 123 45 67
    r"|0\d(?:[ .]\d{2}){4}"  # FR: 01 23 45 67 89
    r"|07\d{3} ?\d{6}"  # UK mobile: 07700 900123
    r")(?![\w-])"
)
_DNI_LETTERS = "TRWAGMYFPDXBNJZSQVHLCKE"
_CARD_PREFIXES = (("4",), ("34", "37"), ("51", "52", "53", "54", "55"), ("6011", "65", "644", "645", "646", "647",
                  "648", "649"), ("35",), ("36", "38", "30"), ("62",))


def count(text: str, kinds: tuple[str, ...] = KINDS) -> dict[str, int]:
    """How many matches of each kind ``text`` holds (only kinds with matches). Overlaps count once, for the
    first kind in the order iban, card, pesel, dni, ssn, email, phone."""
    found: dict[str, int] = {}
    taken: list[tuple[int, int]] = []
    numeric = _RUN.search(text) is not None
    for kind, pattern, valid in _DETECTORS:
        if kind not in kinds or (kind != "email" and not numeric) or (kind == "email" and "@" not in text):
            continue
        for m in pattern.finditer(text):
            span = m.span()
            if any(a < span[1] and span[0] < b for a, b in taken) or not valid(m.group()):
                continue
            taken.append(span)
            found[kind] = found.get(kind, 0) + 1
    return found


# maybe(): a digit becomes "1", a run's separator (the rest of _RUN's class) "0", "@" and "\\" stay, every other byte
# becomes "x"; a run is then a "1" and five more of "01", found by a regex with a literal first byte (ten times
# faster than _RUN's class on raw text)
_MARKS = bytes(49 if chr(i).isdigit() and i < 128 else 48 if chr(i) in " .()/-" else i if chr(i) in "@\\" else 120
               for i in range(256))
_RUN_START = re.compile(rb"1[01]{5}")  # one regex each: an alternation would lose the literal first byte
_AT = re.compile(rb"@")
_ESCAPE = re.compile(rb"\\[u/]")


def maybe(raw: str | bytes | None) -> bool:
    """Whether a row's raw JSON text can hold anything ``count`` would look at: False only when ``count`` of its
    strings is certainly {} (no ``@`` for e-mail, no run of a digit and five more digits or separators, what _RUN
    starts with, for the numeric kinds). A superset, never a miss: JSON escapes other than ``\\u`` and ``\\/``
    decode to characters outside a run, so a run or an ``@`` in a decoded string is also in the raw text; a
    non-ASCII row (``\\d`` matches other digits too) or one with those escapes is always True."""
    return raw is None or bool(maybe_rows([raw]))


def maybe_rows(raws: list) -> list[int]:
    """The positions of the raw rows (the JSON texts of a file's rows: all str or all bytes) that ``maybe`` holds,
    decided for the whole list at once: its ASCII rows joined, one bytes.translate and one regex over the marks,
    each hit mapped back to the row it starts in (a run across two rows can only add a row); a non-ASCII row is
    always one."""
    if not raws:
        return []
    joined = ("" if isinstance(raws[0], str) else b"").join(raws)
    if not joined.isascii():
        ascii_rows = [i for i, raw in enumerate(raws) if raw.isascii()]
        found = {ascii_rows[i] for i in maybe_rows([raws[i] for i in ascii_rows])}
        return sorted(found.union(i for i, raw in enumerate(raws) if not raw.isascii()))
    if isinstance(joined, str):
        joined = joined.encode("ascii")
    marks = joined.translate(_MARKS)
    hits = [m.start() for m in _RUN_START.finditer(marks)]
    if b"@" in marks:
        hits += [m.start() for m in _AT.finditer(marks)]
    if b"\\" in marks:
        hits += [m.start() for m in _ESCAPE.finditer(joined)]
    ends = list(accumulate(map(len, raws)))  # row i ends before ends[i]
    return sorted({bisect_right(ends, hit) for hit in hits})


def luhn_ok(digits: str) -> bool:
    """The Luhn (mod 10) checksum of a payment card number."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _card(match: str) -> bool:
    digits = match.replace(" ", "").replace("-", "")
    if not 13 <= len(digits) <= 19 or len(set(digits)) == 1:
        return False
    prefix_ok = any(digits.startswith(p) for group in _CARD_PREFIXES for p in group) or (
        2221 <= int(digits[:4]) <= 2720)
    return prefix_ok and luhn_ok(digits)


def iban_ok(text: str) -> bool:
    """IBAN: the country's length and the ISO 13616 mod-97 check."""
    iban = text.replace(" ", "").upper()
    country = iban[:2]
    if len(iban) != IBAN_LENGTHS.get(country, len(iban)) or not 15 <= len(iban) <= 34:
        return False
    rearranged = iban[4:] + iban[:4]
    number = "".join(str(int(c, 36)) for c in rearranged)
    return int(number) % 97 == 1


def pesel_ok(digits: str) -> bool:
    """PESEL: the weighted checksum and a real date of birth (the month encodes the century)."""
    if len(digits) != 11 or not digits.isdigit():
        return False
    weights = (1, 3, 7, 9, 1, 3, 7, 9, 1, 3)
    if (10 - sum(w * int(d) for w, d in zip(weights, digits)) % 10) % 10 != int(digits[10]):
        return False
    yy, mm, dd = int(digits[:2]), int(digits[2:4]), int(digits[4:6])
    century = {0: 1900, 20: 2000, 40: 2100, 60: 2200, 80: 1800}.get((mm - 1) // 20 * 20 if mm else -1)
    if century is None:
        return False
    month = mm - (mm - 1) // 20 * 20
    return 1 <= month <= 12 and 1 <= dd <= calendar.monthrange(century + yy, month)[1]


def dni_ok(text: str) -> bool:
    """Spanish DNI / NIE: the control letter is the number mod 23."""
    s = text.replace("-", "")
    number = s[:-1].replace("X", "0").replace("Y", "1").replace("Z", "2")
    return _DNI_LETTERS[int(number) % 23] == s[-1]


def _phone(match: str) -> bool:
    n = sum(c.isdigit() for c in match)
    return 9 <= n <= 15


_DETECTORS = (
    ("iban", _IBAN, iban_ok),
    ("card", _CARD, _card),
    ("pesel", _PESEL, pesel_ok),
    ("dni", _DNI, dni_ok),
    ("ssn", _SSN, lambda s: True),
    ("email", _EMAIL, lambda s: True),
    ("phone", _PHONE, _phone),
)
