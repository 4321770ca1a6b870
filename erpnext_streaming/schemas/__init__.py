"""Event schemas: the `.avsc` files, their loader (`registry`), fingerprints, evolution check
(`evolution`) and derivation from doctype meta (`derive`). Framework-free.
"""

from erpnext_streaming.schemas.errors import (
	BuildError,
	EncodeError,
	EventDataError,
	SchemaError,
	UnknownSchemaError,
)
from erpnext_streaming.schemas.registry import (
	EventSchema,
	SchemaRegistry,
	default_registry,
	get_event_schema,
	shipped_doctypes,
)
