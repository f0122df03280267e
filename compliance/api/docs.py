"""The API's schema and its two readers, public: Swagger UI (/api/v1/docs/) and Redoc
(/api/v1/redoc/). Their scripts and styles are drf-spectacular-sidecar's static files, served by
this service (WhiteNoise: config/settings.py), so the pages render with no network; a
Content-Security-Policy tells the browser to fetch nothing from another host (Redoc's sidebar shows
Redocly's logo from its CDN: not fetched, the link stays)."""

from functools import wraps

from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

# The pages' own inline script (Swagger UI's settings) and styles, Swagger UI's data: icons, and
# Redoc's search worker (a blob:) are this origin's too.
SAME_ORIGIN_ONLY = ("default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
                    "img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:")


def same_origin_only(view):
    @wraps(view)
    def page(request, *args, **kwargs):
        response = view(request, *args, **kwargs)
        response["Content-Security-Policy"] = SAME_ORIGIN_ONLY
        return response
    return page


PUBLIC = {"permission_classes": [], "authentication_classes": []}
schema = SpectacularAPIView.as_view(**PUBLIC)
swagger_ui = same_origin_only(SpectacularSwaggerView.as_view(url_name="api-schema", **PUBLIC))
# Redoc's page without the web fonts drf-spectacular's own links from Google (templates/api/redoc.html).
redoc = same_origin_only(SpectacularRedocView.as_view(url_name="api-schema", template_name="api/redoc.html", **PUBLIC))
