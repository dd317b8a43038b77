"""Request body parsers of the API. Kept free of rest_framework.views, which imports the
classes named in settings while it loads."""

from rest_framework import exceptions
from rest_framework.parsers import JSONParser


class CurlJSONParser(JSONParser):
    """JSON sent as `application/x-www-form-urlencoded`, which is what `curl -d '{...}'`
    labels it without `-H "Content-Type: application/json"` (the original design's examples
    are written that way). A real form body is refused with 415. Cross-site forms gain
    nothing by it: session-authenticated writes still need the CSRF token."""

    media_type = "application/x-www-form-urlencoded"

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except exceptions.ParseError:
            raise exceptions.UnsupportedMediaType(
                media_type, detail="Send a JSON body with Content-Type: application/json."
            ) from None
