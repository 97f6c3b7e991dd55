"""Page data built from plain values (services/web/model.py): no gRPC, no HTTP, so each page's
content can be tested with values made by hand."""
