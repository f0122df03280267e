"""The API's request-body parsers: a body the parser cannot read is the client's error (400), never a 500."""

from rest_framework import parsers
from rest_framework.exceptions import ParseError


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser (the API's default: REST_FRAMEWORK in config/settings.py), with a JSON
    nested too deep for Python's decoder as a ParseError too.

    DRF turns the decoder's ValueError into ParseError but not its RecursionError, which a body
    nested about a thousand deep (`{"a":{"a":…}}`) raises: that answered 500."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - the body is nested too deeply") from None
