"""The documentation served under /docs, from files shipped in this package (no internet needed).

`openapi-public.yaml` is the public API's OpenAPI document (its one source: the gateway serves
it, the fuzz tests read it); `docs.css` styles the page `routes.DocsPage` renders on the server.
"""
