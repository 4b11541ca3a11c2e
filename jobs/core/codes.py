"""The value domains landing data is checked against: ISO 3166-1 alpha-2 country codes,
ISO 639-1 language codes (both from the CLDR data that Babel ships), and device types."""

from __future__ import annotations

from babel import Locale

# CLDR territory codes of two letters that are not ISO 3166-1 alpha-2 assignments:
# exceptionally reserved (AC CP CQ DG EA IC TA), groupings (EU EZ QO UN), private use and
# pseudo-locales (XA XB XK ZZ).
_NOT_ISO_3166 = frozenset({"AC", "CP", "CQ", "DG", "EA", "IC", "TA", "EU", "EZ", "QO", "UN", "XA", "XB", "XK", "ZZ"})

COUNTRY_CODES = frozenset(
    code for code in Locale("en").territories if len(code) == 2 and code.isalpha() and code not in _NOT_ISO_3166
)
LANGUAGE_CODES = frozenset(code for code in Locale("en").languages if len(code) == 2 and code.isalpha())
DEVICE_TYPES = ("tv", "mobile", "tablet", "web")
