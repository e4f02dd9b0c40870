"""The service layer: every operation an operator or a user can perform, once.

Owns what the skins (the ``gigmcp`` command today, the REST API and the dashboard
next) share: each operation is a typed function taking the acting user first
(:class:`gigmcp.control.actor.Actor`), checking that the actor owns the rows it touches
or is an admin, and returning frozen dataclasses. It must never let an ORM object out,
return or log a credential value, or raise anything but a :class:`gigmcp.errors.GigError`
on purpose.
"""
