"""The event catalog: which (doctype, document method) streams, where, and how.

The hot path asks one question per document event, `catalog.route(doctype, method)`,
and gets a `Route` or None from a dict built once per settings save. Building is pure
(`Catalog.from_config`); caching follows Frappe's Webhook (`frappe.cache.get_value` with
a generator, which Frappe keeps in a request-local copy after the first read), and
Streaming Settings' `on_update` calls `clear_cache()`.
"""

from __future__ import annotations

from collections.abc import Container, Sequence
from dataclasses import dataclass

from erpnext_streaming import constants as c
from erpnext_streaming.settings import CatalogRow, StreamingConfig

CACHE_KEY = "erpnext_streaming:catalog"


@dataclass(frozen=True, slots=True)
class Route:
	"""The answer for one (doctype, method): what the event is called and where it goes."""

	doctype: str
	method: str
	kind: str
	event_type: str
	topic: str
	schema_version: int  # 0 = newest shipped version
	masked_fields: frozenset[str]
	mask_mode: str
	encoding: str = c.Encoding.DEFAULT  # how the drainer frames the message (constants.Encoding)


class Catalog:
	"""Immutable lookup table built from a `StreamingConfig`."""

	__slots__ = ("_routes", "enabled", "stream_data_import")

	def __init__(self, routes: dict[tuple[str, str], Route], enabled: bool, stream_data_import: bool):
		self._routes = routes
		self.enabled = enabled
		self.stream_data_import = stream_data_import

	def route(self, doctype: str, method: str) -> Route | None:
		return self._routes.get((doctype, method))

	@classmethod
	def from_config(cls, config: StreamingConfig) -> Catalog:
		routes: dict[tuple[str, str], Route] = {}
		if config.enabled:
			for row in config.catalog:
				routes.update(_routes_for(row, config))
		return cls(routes, enabled=config.enabled, stream_data_import=config.stream_data_import)

	def __reduce__(self):
		# picklable for frappe.cache (Redis)
		return (Catalog, (self._routes, self.enabled, self.stream_data_import))


def _routes_for(row: CatalogRow, config: StreamingConfig) -> dict[tuple[str, str], Route]:
	if not row.enabled or not row.document_type:
		return {}
	spec = c.spec_for(row.document_type)
	topic = row.topic or c.default_topic(config.topic_prefix, row.document_type)
	masked = frozenset(row.masked_fields)
	return {
		(row.document_type, t.method): Route(
			doctype=row.document_type,
			method=t.method,
			kind=t.kind,
			event_type=t.event_type,
			topic=topic,
			schema_version=row.schema_version,
			masked_fields=masked,
			mask_mode=config.mask_mode,
			encoding=config.encoding_for(row),
		)
		for t in spec.triggers
		if row.streams(t.kind)
	}


def default_catalog_rows(topic_prefix: str = c.DEFAULT_TOPIC_PREFIX) -> list[dict]:
	"""Catalog rows for the built-in doctypes, every applicable event switched on."""
	rows = []
	for spec in c.BUILTIN_SPECS:
		kinds = spec.kinds
		rows.append(
			{
				"document_type": spec.doctype,
				"enabled": 1,
				**{field: int(kind in kinds) for kind, field in c.Kind.CATALOG_FIELD.items()},
				"topic": "",
				"schema_version": 0,
				"masked_fields": "",
				"encoding": "",
				"description": describe(spec.doctype, c.default_topic(topic_prefix, spec.doctype)),
			}
		)
	return rows


def missing_default_rows(
	existing: Sequence[str], seeded: Container[str], installed: Container[str], topic_prefix: str
) -> list[dict]:
	"""Default rows for built-in doctypes that are installed and were never seeded.

	Rows an admin has (even disabled or edited) are never touched, and a built-in row the
	admin deleted is not added back (it is in `seeded`), so `after_migrate` can call this on
	every migrate; a built-in doctype that appears later (ERPNext installed after this app)
	is seeded then.
	"""
	have = set(existing)
	return [
		row
		for row in default_catalog_rows(topic_prefix)
		if row["document_type"] not in have
		and row["document_type"] not in seeded
		and row["document_type"] in installed
	]


def describe(doctype: str, topic: str) -> str:
	"""The read-only explanation shown on each catalog row."""
	return f"{c.spec_for(doctype).description} Topic: {topic}."


# -- Frappe glue: cached access -------------------------------------------------------


def load_catalog() -> Catalog:
	import frappe

	return Catalog.from_config(StreamingConfig.from_doc(frappe.get_cached_doc(c.SETTINGS_DOCTYPE)))


def get_catalog() -> Catalog:
	"""The site's catalog: a request-local dict lookup after the first call."""
	import frappe

	return frappe.cache.get_value(CACHE_KEY, generator=load_catalog)


def clear_cache() -> None:
	import frappe

	frappe.cache.delete_value(CACHE_KEY)
