# Copyright (c) 2026, erpnext_streaming developers and contributors
# License: MIT. See LICENSE

from frappe.model.document import Document


class StreamingEventCatalog(Document):
	# begin: auto-generated types
	# This code is auto-generated. Do not modify anything in this block.

	from typing import TYPE_CHECKING

	if TYPE_CHECKING:
		from frappe.types import DF

		description: DF.SmallText | None
		document_type: DF.Link
		enabled: DF.Check
		encoding: DF.Literal["", "Schemaless Avro", "Single-object Avro", "Confluent Schema Registry"]
		masked_fields: DF.SmallText | None
		on_cancel: DF.Check
		on_change: DF.Check
		on_submit: DF.Check
		on_update_after_submit: DF.Check
		parent: DF.Data
		parentfield: DF.Data
		parenttype: DF.Data
		schema_version: DF.Int
		topic: DF.Data | None
	# end: auto-generated types
