"""Event schemas: the `.avsc` files, their loader, fingerprints, evolution check and derivation.

Public API (framework-free):
- `get_event_schema(doctype, version=0) -> EventSchema` (0 = newest shipped version)
- `versions(doctype) -> tuple[int, ...]`, `shipped_doctypes() -> tuple[str, ...]`
- `EventSchema`: `.doctype`, `.version`, `.name`, `.schema`, `.parsed`, `.canonical`,
  `.fingerprint`, `.document_schema`
- `SchemaRegistry(directories)` for other schema folders (tests, fixtures)
- `derive.derive_schema(doctype, fields, child_fields=None)` for admin-added doctypes
- `evolution.check(registry)`; `serializer.AvroEventSerializer`, `decode`, `headers`
- errors: `SchemaError`, `UnknownSchemaError`, `IncompatibleSchemaError`, and the data
  errors `EventDataError` > `BuildError`, `EncodeError`
"""

from erpnext_streaming.schemas.errors import (
	BuildError,
	EncodeError,
	EventDataError,
	IncompatibleSchemaError,
	SchemaError,
	UnknownSchemaError,
)
from erpnext_streaming.schemas.registry import (
	EventSchema,
	SchemaRegistry,
	default_registry,
	get_event_schema,
	shipped_doctypes,
	versions,
)
