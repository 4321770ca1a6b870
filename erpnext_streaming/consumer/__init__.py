"""The consumer kit: read erpnext_streaming events from Kafka without re-solving the hard parts.

No Frappe import anywhere here: a consumer needs only this package (its `.avsc` files
and Python code), confluent-kafka and fastavro.

- `EventConsumer(bootstrap, topics=None, lateness=...)`: subscribe, decode, dedup, order.
- `Decoder`, `SchemaStore`, `Event`, `DecodeError`: the three encodings (`decoding.py`).
- `Reassembler`, `PartsError`: large events sent in parts, whole again (`parts.py`).
- `Deduplicator`, `Reorderer`: bounded dedup by event id; per-company order by sequence
  or event time with a watermark that tolerates late events (`ordering.py`).
- `kpis`: reference KPIs built on the kit (revenue velocity, stock position, cash and
  receivable exposure, job card cycle and idle time, open work orders).
- `alerts`: threshold alerts that fire once per crossing.
"""

from erpnext_streaming.consumer.decoding import DecodeError, Decoder, Event, SchemaStore, encoding_of
from erpnext_streaming.consumer.ordering import Deduplicator, Reorderer
from erpnext_streaming.consumer.parts import PartsError, Reassembler, Whole
from erpnext_streaming.consumer.stream import EventConsumer, default_topics
