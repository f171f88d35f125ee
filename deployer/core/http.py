"""HTTP with credentials that stay on the host they were meant for.

urllib keeps every header on a redirect, even to another host; the Hub redirects large files to
CDN hosts, and an endpoint could redirect anywhere. Credentials (Authorization, Modal proxy
headers) are dropped when a redirect leaves the original host.
"""

from __future__ import annotations

import functools
import urllib.parse
import urllib.request

CREDENTIAL_HEADERS = ("Authorization", "Modal-key", "Modal-secret")  # as urllib capitalises them


class _CredentialSafeRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        # Another host, or the same one over another scheme (https -> http would send the key in
        # clear text, and port 80 may be someone else's server).
        before, after = urllib.parse.urlsplit(req.full_url), urllib.parse.urlsplit(newurl)
        if new is not None and (after.scheme, after.netloc) != (before.scheme, before.netloc):
            for name in CREDENTIAL_HEADERS:
                new.remove_header(name)
        return new


@functools.cache
def credential_safe_opener() -> urllib.request.OpenerDirector:
    return urllib.request.build_opener(_CredentialSafeRedirects)
