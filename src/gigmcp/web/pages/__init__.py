"""The dashboard's pages, one module per page: each reads and changes things only through
the service layer (control/), with the viewer's actor, and renders a template."""
